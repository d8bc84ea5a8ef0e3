#!/usr/bin/env bash
# MG-VTON step 2: the geometric matching module, between the cloth mask and stage I's cloth region (stage I frozen).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
train_mgvton_stage gmm "$MGVTON_GMM_STEPS" parse "$@"
