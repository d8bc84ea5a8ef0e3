#!/usr/bin/env bash
# MG-VTON step 5: the whole model on the test triplets: result/mgvton_refine_final.pth/test/{parse, warp-cloth,
# warp-mask, coarse-person (the Warp-GAN's try-on), try-on}, each named by the triplet key.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_logged mgvton-test "$PYTHON" test.py --name "$MGVTON_TEST_NAME" --stage MGVTON_REFINE "${COMMON_ARGS[@]}" \
    --datamode test --data_list "$MPV_LIST" --checkpoint "$(mgvton_checkpoint refine)" --result_dir "$RESULT_DIR" "$@"
