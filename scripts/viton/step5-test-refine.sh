#!/usr/bin/env bash
# VITON step 5: the try-ons of the test lists, result/viton_refine_final.pth/test/try-on (score them with
# evaluate.py --gmm_checkpoint_name shape_context --tom_checkpoint_name viton_refine_final.pth).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
with_paired_test_list
for data_list in $TEST_LISTS; do
    run_logged viton-step5-test-refine "$PYTHON" test.py --name "$VITON_REFINE_TEST_NAME" --stage VITON_REFINE \
        "${COMMON_ARGS[@]}" --datamode test --data_list "$data_list" --checkpoint "$VITON_REFINE_CHECKPOINT" \
        --result_dir "$RESULT_DIR" --warp_dir "$SHAPE_CONTEXT_DIR/test" "$@"
done
