#!/usr/bin/env bash
# Settings of WUTON's steps, sourced by each after CP-VTON's (../common.sh: data, folders, logs, workers, the
# test lists). Every value can be set from the environment. No official code exists: batch, learning rate and
# steps are ours (README "Methods").
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

WUTON_BATCH_SIZE="${WUTON_BATCH_SIZE:-8}"
WUTON_LR="${WUTON_LR:-0.0002}"
WUTON_KEEP_STEP="${WUTON_KEEP_STEP:-100000}"
WUTON_DECAY_STEP="${WUTON_DECAY_STEP:-100000}"
WUTON_NAME="${WUTON_NAME:-wuton_train}"
WUTON_TEST_NAME="${WUTON_TEST_NAME:-wuton_test}"
WUTON_CHECKPOINT="${WUTON_CHECKPOINT:-$CHECKPOINT_DIR/$WUTON_NAME/wuton_final.pth}"
