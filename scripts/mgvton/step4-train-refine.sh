#!/usr/bin/env bash
# MG-VTON step 4: stage III, the refinement's composition mask (the earlier stages frozen). Its checkpoint is the
# whole model.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
train_mgvton_stage refine "$MGVTON_REFINE_STEPS" warp "$@"
