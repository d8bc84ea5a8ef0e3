#!/usr/bin/env bash
# MG-VTON step 1: stage I, the conditional parsing network (and its multi-scale discriminator).
# Extra arguments go to train.py (e.g. --mgvton_ngf 32 --mgvton_blocks 6 for a smaller model).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
train_mgvton_stage parse "$MGVTON_PARSE_STEPS" '' "$@"
