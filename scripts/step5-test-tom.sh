#!/usr/bin/env bash
# Step 5: run the trained TOM on the test split: result/tom_final.pth/test/try-on.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
with_paired_test_list
for data_list in $TEST_LISTS; do
    run_logged step5-test-tom "$PYTHON" test.py --name "$TOM_TEST_NAME" --stage TOM "${COMMON_ARGS[@]}" \
        --datamode test --data_list "$data_list" --checkpoint "$TOM_CHECKPOINT" --result_dir "$RESULT_DIR" "$@"
done
