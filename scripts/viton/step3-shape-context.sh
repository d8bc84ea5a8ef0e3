#!/usr/bin/env bash
# VITON step 3: the shape-context TPS warps, result/shape_context/<split>/{warp-cloth,warp-mask}: on the training
# split onto the parse map's clothing mask (the refinement's training input, as the official code), on the test
# split onto stage 1's predicted mask. Extra arguments go to shape_context.py.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
with_paired_test_list
run_logged viton-step3-shape-context "$PYTHON" shape_context.py --dataroot "$DATAROOT" --datamode train \
    --data_list train_pairs.txt --target parse --result_dir "$RESULT_DIR" --workers "$WORKERS" "$@"
for data_list in $TEST_LISTS; do
    run_logged viton-step3-shape-context "$PYTHON" shape_context.py --dataroot "$DATAROOT" --datamode test \
        --data_list "$data_list" --target coarse --result_dir "$RESULT_DIR" --workers "$WORKERS" \
        --coarse_dir "$RESULT_DIR/$(basename "$VITON_COARSE_CHECKPOINT")/test" "$@"
done
