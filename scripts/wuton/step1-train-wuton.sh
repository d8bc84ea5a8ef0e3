#!/usr/bin/env bash
# WUTON step 1: train the geometric module, the siamese U-Net and the discriminator together, end to end.
# Extra arguments go to train.py (e.g. --gmm_checkpoint checkpoints/gmm_train_new/gmm_final.pth).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_logged wuton-step1-train "$PYTHON" train.py --name "$WUTON_NAME" --stage WUTON "${COMMON_ARGS[@]}" \
    --batch-size "$WUTON_BATCH_SIZE" --lr "$WUTON_LR" --checkpoint_dir "$CHECKPOINT_DIR" \
    --save_count "$SAVE_COUNT" --shuffle --keep_step "$WUTON_KEEP_STEP" --decay_step "$WUTON_DECAY_STEP" "$@"
