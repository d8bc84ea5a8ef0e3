#!/usr/bin/env bash
# MG-VTON step 6: the scores of step 5's try-ons against person B's photos (evaluate.py --triplets: SSIM, parse
# accuracy and mean IoU, the warp's IoU; LPIPS, IS and FID where their weights are in torch's cache) into
# result/mgvton_refine_final.pth/test/metrics.json, and the strips of every test triplet. Extra arguments go to
# evaluate.py (e.g. --metrics ssim,parse_miou).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_logged mgvton-evaluate "$PYTHON" evaluate.py --dataroot "$DATAROOT" --datamode test --triplets "$MPV_LIST" \
    --result_dir "$RESULT_DIR" --workers "$WORKERS" "$@"
run_logged mgvton-strips "$PYTHON" smart_show_test_result.py --dataroot "$DATAROOT" --datamode test \
    --triplets "$MPV_LIST" --result_dir "$RESULT_DIR" --out_simple "$MGVTON_STRIPS_SIMPLE" \
    --out_verbose "$MGVTON_STRIPS_VERBOSE"
