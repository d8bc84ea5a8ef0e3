#!/usr/bin/env bash
# VITON step 4: train the refinement (stage 2) on the shape-context warps of the training split, stage 1
# frozen inside it (in training mode, as the official code; --coarse_mode eval to change). Extra arguments go to
# train.py.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_logged viton-step4-train-refine "$PYTHON" train.py --name "$VITON_REFINE_NAME" --stage VITON_REFINE \
    "${COMMON_ARGS[@]}" "${VITON_TRAIN_ARGS[@]}" --keep_step "$VITON_REFINE_STEPS" \
    --coarse_checkpoint "$VITON_COARSE_CHECKPOINT" --warp_dir "$SHAPE_CONTEXT_DIR/train" "$@"
