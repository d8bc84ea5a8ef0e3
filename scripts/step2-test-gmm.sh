#!/usr/bin/env bash
# Step 2: run the trained GMM on the test split: result/gmm_final.pth/test/{warp-cloth,warp-mask}.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
with_paired_test_list write
for data_list in $TEST_LISTS; do
    run_logged step2-test-gmm "$PYTHON" test.py --name "$GMM_TEST_NAME" --stage GMM "${COMMON_ARGS[@]}" \
        --datamode test --data_list "$data_list" --checkpoint "$GMM_CHECKPOINT" --result_dir "$RESULT_DIR" "$@"
done
