#!/usr/bin/env bash
# WUTON step 2: try-ons of the test lists (test_pairs.txt, other clothes, and test_pairs_paired.txt, each person
# in their own cloth, written where VITON's data lacks it) and the image-space warps with the same theta:
# result/wuton_final.pth/test/{try-on,warp-cloth,warp-mask}.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
with_paired_test_list write
for data_list in $TEST_LISTS; do
    run_logged wuton-step2-test "$PYTHON" test.py --name "$WUTON_TEST_NAME" --stage WUTON "${COMMON_ARGS[@]}" \
        --datamode test --data_list "$data_list" --checkpoint "$WUTON_CHECKPOINT" --result_dir "$RESULT_DIR" "$@"
done
