#!/usr/bin/env bash
# Step 3: warp the training split with the trained GMM (TOM's training inputs), then place the
# warps of both splits where the TOM stage reads them: $DATAROOT/<split>/{warp-cloth,warp-mask}.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_logged step3-generate-tom-data "$PYTHON" test.py --name "$GMM_TEST_NAME" --stage GMM "${COMMON_ARGS[@]}" \
    --datamode train --data_list train_pairs.txt --checkpoint "$GMM_CHECKPOINT" --result_dir "$RESULT_DIR" "$@"
gmm_results="$RESULT_DIR/$(basename "$GMM_CHECKPOINT")"
for split in train test; do
    for folder in warp-cloth warp-mask; do
        place_results "$gmm_results/$split/$folder" "$DATAROOT/$split/$folder"
    done
done
