#!/usr/bin/env bash
# Settings of MG-VTON's steps, sourced by each after CP-VTON's (../common.sh: folders, logs, workers). Every value
# can be set from the environment. DATAROOT is the MPV folder (all/, all_parsing/, all_person_clothes_keypoints/,
# the triplet list MPV_LIST). The paper's training: Adam lr 2e-4, batch 40; 200, 35, 15 and 5 epochs of its
# 52,236 training triplets for the four stages, the step counts below (1,306 steps an epoch), the lr held
# constant (the paper names no decay: ours).
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

MPV_LIST="${MPV_LIST:-all_poseA_poseB_clothes_0607.txt}"
MGVTON_BATCH_SIZE="${MGVTON_BATCH_SIZE:-40}"
MGVTON_LR="${MGVTON_LR:-0.0002}"
MGVTON_PARSE_STEPS="${MGVTON_PARSE_STEPS:-261200}"
MGVTON_GMM_STEPS="${MGVTON_GMM_STEPS:-45710}"
MGVTON_WARP_STEPS="${MGVTON_WARP_STEPS:-19590}"
MGVTON_REFINE_STEPS="${MGVTON_REFINE_STEPS:-6530}"
MGVTON_NAME="${MGVTON_NAME:-mgvton}"    # runs <name>_parse, <name>_gmm, <name>_warp, <name>_refine
MGVTON_TEST_NAME="${MGVTON_TEST_NAME:-mgvton_test}"
MGVTON_STRIPS_SIMPLE="${MGVTON_STRIPS_SIMPLE:-result_simple_mgvton}"
MGVTON_STRIPS_VERBOSE="${MGVTON_STRIPS_VERBOSE:-result_verbose_mgvton}"

# mgvton_checkpoint STAGE: the final checkpoint of stage parse, gmm, warp or refine.
mgvton_checkpoint() {
    echo "$CHECKPOINT_DIR/${MGVTON_NAME}_$1/mgvton_$1_final.pth"
}

# train_mgvton_stage STAGE STEPS PREVIOUS [train.py arguments]: trains MGVTON_<STAGE> on the train triplets, on
# top of the PREVIOUS stage's final checkpoint ('' for stage I).
train_mgvton_stage() {
    local stage="$1" steps="$2" previous="$3"; shift 3
    local upper; upper="$(echo "$stage" | tr '[:lower:]' '[:upper:]')"
    local from=()
    if [ -n "$previous" ]; then
        from=(--previous_checkpoint "$(mgvton_checkpoint "$previous")")
    fi
    run_logged "mgvton-train-$stage" "$PYTHON" train.py --name "${MGVTON_NAME}_$stage" --stage "MGVTON_$upper" \
        "${COMMON_ARGS[@]}" --datamode train --data_list "$MPV_LIST" --batch-size "$MGVTON_BATCH_SIZE" \
        --lr "$MGVTON_LR" --checkpoint_dir "$CHECKPOINT_DIR" --save_count "$SAVE_COUNT" --shuffle \
        --keep_step "$steps" --decay_step 0 "${from[@]}" "$@"
}
