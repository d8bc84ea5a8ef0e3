#!/usr/bin/env bash
# Step 4: train the Try-On Module on the warps placed by step 3. Extra arguments go to train.py.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_logged step4-train-tom "$PYTHON" train.py --name "$TOM_NAME" --stage TOM "${COMMON_ARGS[@]}" \
    --checkpoint_dir "$CHECKPOINT_DIR" --save_count "$SAVE_COUNT" --shuffle \
    --keep_step "$TOM_KEEP_STEP" --decay_step "$TOM_DECAY_STEP" "$@"
