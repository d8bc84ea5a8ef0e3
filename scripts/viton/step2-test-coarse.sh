#!/usr/bin/env bash
# VITON step 2: stage 1's clothing masks and coarse persons on both splits:
# result/viton_coarse_final.pth/<split>/{coarse-person,coarse-mask} (step 3 matches the test masks).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
with_paired_test_list write
run_logged viton-step2-test-coarse "$PYTHON" test.py --name "$VITON_COARSE_TEST_NAME" --stage VITON_COARSE \
    "${COMMON_ARGS[@]}" --datamode train --data_list train_pairs.txt --checkpoint "$VITON_COARSE_CHECKPOINT" \
    --result_dir "$RESULT_DIR" "$@"
for data_list in $TEST_LISTS; do
    run_logged viton-step2-test-coarse "$PYTHON" test.py --name "$VITON_COARSE_TEST_NAME" --stage VITON_COARSE \
        "${COMMON_ARGS[@]}" --datamode test --data_list "$data_list" --checkpoint "$VITON_COARSE_CHECKPOINT" \
        --result_dir "$RESULT_DIR" "$@"
done
