#!/usr/bin/env bash
# The README's main command: the whole CP-VTON pipeline (step1..step5, strips, evaluation) on a
# synthetic VITON-format dataset, then the gallery page and the learning curves, in about 12 minutes on
# 2 CPU cores (faster on a GPU).
# Everything goes under demo/ (or $DEMO_DIR); data/, checkpoints/ and result/ are not touched.
# Step counts: DEMO_GMM_STEPS, DEMO_TOM_STEPS; data size: DEMO_N_TRAIN, DEMO_N_TEST.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh

demo="${DEMO_DIR:-demo}"
gmm_steps="${DEMO_GMM_STEPS:-150}"
tom_steps="${DEMO_TOM_STEPS:-60}"

if [ -e "$demo" ]; then
    echo "[demo] removing the previous demo run in $demo/ (made by this script)"
    rm -rf "$demo"
fi

export PYTHON=python
export DATAROOT="$demo/data" CHECKPOINT_DIR="$demo/checkpoints" TENSORBOARD_DIR="$demo/tensorboard"
export GMM_NAME="${GMM_NAME:-gmm_train_new}" TOM_NAME="${TOM_NAME:-tom_train_new}"
export RESULT_DIR="$demo/result" LOG_DIR="$demo/logs" WORKERS="${WORKERS:-1}" SAVE_COUNT="${DEMO_SAVE_COUNT:-50}"
# Two thirds of each budget at the constant learning rate, the rest decaying, as in the paper's schedule.
export GMM_KEEP_STEP=$((gmm_steps * 2 / 3)) GMM_DECAY_STEP=$((gmm_steps - gmm_steps * 2 / 3))
export TOM_KEEP_STEP=$((tom_steps * 2 / 3)) TOM_DECAY_STEP=$((tom_steps - tom_steps * 2 / 3))

echo "[demo] 1/8 synthetic VITON-format data -> $DATAROOT"
python synthetic_data.py --dataroot "$DATAROOT" --n_train "${DEMO_N_TRAIN:-200}" --n_test "${DEMO_N_TEST:-20}" --seed 0

# The TOM perceptual loss wants ImageNet VGG19 weights; offline machines usually lack them.
vgg_args=()
if ! python -c "import networks; networks.find_vgg19_weights()" 2>/dev/null; then
    echo "[demo] no ImageNet VGG19 weights in torch's cache: the TOM stage uses --vgg_init random (demo only)"
    vgg_args=(--vgg_init random)
fi

echo "[demo] 2/8 the untrained GMM, as the baseline of the quality summary"
python train.py --name gmm_untrained --stage GMM --dataroot "$DATAROOT" --checkpoint_dir "$CHECKPOINT_DIR" \
    --tensorboard_dir "$TENSORBOARD_DIR" --keep_step 0 --decay_step 0 --seed 0 > "$demo/untrained.log"
python test.py --name gmm_untrained_test --stage GMM --dataroot "$DATAROOT" --data_list test_pairs_paired.txt \
    --checkpoint "$CHECKPOINT_DIR/gmm_untrained/gmm_final.pth" --result_dir "$demo/result_untrained" \
    --tensorboard_dir "$TENSORBOARD_DIR" --workers "$WORKERS" >> "$demo/untrained.log"

echo "[demo] 3/8 step 1: train GMM for $gmm_steps steps"
bash scripts/step1-train-gmm.sh --seed 0 --display_count 10
echo "[demo] 4/8 steps 2 and 3: warp the test and training splits"
bash scripts/step2-test-gmm.sh
bash scripts/step3-generate-tom-data.sh
echo "[demo] 5/8 step 4: train TOM for $tom_steps steps"
bash scripts/step4-train-tom.sh --seed 0 --display_count 10 "${vgg_args[@]}"
echo "[demo] 6/8 step 5: try-on of the test pairs"
bash scripts/step5-test-tom.sh

echo "[demo] 7/8 evaluation, strips and the gallery page"
python evaluate.py --dataroot "$DATAROOT" --result_dir "$demo/result_untrained" --metrics iou \
    --out "$demo/metrics_untrained.json" > "$demo/evaluate_untrained.log"
python evaluate.py --dataroot "$DATAROOT" --result_dir "$RESULT_DIR" --out "$demo/metrics.json" \
    | tee "$demo/evaluate.log"
python smart_show_test_result.py --dataroot "$DATAROOT" --result_dir "$RESULT_DIR" \
    --out_simple "$demo/result_simple" --out_verbose "$demo/result_verbose" --annotate_ssim \
    --html --metrics "$demo/metrics.json"

echo "[demo] 8/8 learning curves: every saved checkpoint scored on the same-cloth test pairs"
for run in "$GMM_NAME" "$TOM_NAME"; do
    python learning_curves.py --run_dir "$CHECKPOINT_DIR/$run" --dataroot "$DATAROOT" \
        --tensorboard_dir "$TENSORBOARD_DIR" --workers "$WORKERS" > "$demo/curves_$run.log"
    tail -n 1 "$demo/curves_$run.log"
done

python - "$demo" <<'EOF'
import json, sys
demo = sys.argv[1]
before = json.load(open(f'{demo}/metrics_untrained.json'))['metrics']['iou']['value']
after = json.load(open(f'{demo}/metrics.json'))['metrics']
print(f'\n[demo] quality summary (synthetic test split, same-cloth pairs):')
print(f'  warped-mask IoU vs the person\'s cloth region: untrained GMM {before:.3f} -> trained {after["iou"]["value"]:.3f}')
print(f'  try-on SSIM vs the person photo: {after["ssim"]["value"]:.3f}')
EOF
cat <<EOF

[demo] done. Where to look:
  gallery:      $demo/result_simple/index.html (open it in a browser: every pair, sortable by score)
  strips:       $demo/result_simple/ (7 panels: cloth, mask, person, parse, warp, warp mask, try-on)
                $demo/result_verbose/ (inputs and outputs, labelled)
  curves:       $CHECKPOINT_DIR/$GMM_NAME/curves.png, $CHECKPOINT_DIR/$TOM_NAME/curves.png (and eval/* in TensorBoard)
  TensorBoard:  tensorboard --logdir $demo/tensorboard
  checkpoints:  $CHECKPOINT_DIR/   results: $RESULT_DIR/   logs: $LOG_DIR/
  metrics:      $demo/metrics.json
EOF
