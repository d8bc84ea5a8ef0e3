#!/usr/bin/env bash
# VITON step 1: train the coarse encoder-decoder (stage 1). Extra arguments go to train.py.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_logged viton-step1-train-coarse "$PYTHON" train.py --name "$VITON_COARSE_NAME" --stage VITON_COARSE \
    "${COMMON_ARGS[@]}" "${VITON_TRAIN_ARGS[@]}" --keep_step "$VITON_COARSE_STEPS" "$@"
