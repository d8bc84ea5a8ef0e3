#!/usr/bin/env bash
# Settings of VITON's step1..step5, sourced by each after CP-VTON's (../common.sh: data, folders, logs, workers,
# the test lists). Every value can be set from the environment. The defaults are the official code's: batch 16,
# Adam lr 2e-4 held constant; the released stage 1 is at 15k steps.
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

VITON_BATCH_SIZE="${VITON_BATCH_SIZE:-16}"
VITON_LR="${VITON_LR:-0.0002}"
VITON_COARSE_STEPS="${VITON_COARSE_STEPS:-15000}"
VITON_REFINE_STEPS="${VITON_REFINE_STEPS:-15000}"
VITON_COARSE_NAME="${VITON_COARSE_NAME:-viton_coarse_train}"
VITON_COARSE_TEST_NAME="${VITON_COARSE_TEST_NAME:-viton_coarse_test}"
VITON_REFINE_NAME="${VITON_REFINE_NAME:-viton_refine_train}"
VITON_REFINE_TEST_NAME="${VITON_REFINE_TEST_NAME:-viton_refine_test}"
VITON_COARSE_CHECKPOINT="${VITON_COARSE_CHECKPOINT:-$CHECKPOINT_DIR/$VITON_COARSE_NAME/viton_coarse_final.pth}"
VITON_REFINE_CHECKPOINT="${VITON_REFINE_CHECKPOINT:-$CHECKPOINT_DIR/$VITON_REFINE_NAME/viton_refine_final.pth}"
SHAPE_CONTEXT_DIR="$RESULT_DIR/shape_context"
VITON_TRAIN_ARGS=(--batch-size "$VITON_BATCH_SIZE" --lr "$VITON_LR" --checkpoint_dir "$CHECKPOINT_DIR"
                  --save_count "$SAVE_COUNT" --shuffle --decay_step 0)
