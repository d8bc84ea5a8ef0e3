#!/usr/bin/env bash
# Step 1: train the Geometric Matching Module. Extra arguments go to train.py.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_logged step1-train-gmm "$PYTHON" train.py --name "$GMM_NAME" --stage GMM "${COMMON_ARGS[@]}" \
    --checkpoint_dir "$CHECKPOINT_DIR" --save_count "$SAVE_COUNT" --shuffle \
    --keep_step "$GMM_KEEP_STEP" --decay_step "$GMM_DECAY_STEP" "$@"
