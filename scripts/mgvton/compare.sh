#!/usr/bin/env bash
# MG-VTON against the naive baseline (CP-VTON in the source pose), against itself without stage III, the exact
# source-pose answer and a noise row, on synthetic two-pose data: <out>/comparison.md (default multipose/). Every
# argument goes to multipose_comparison.py (python multipose_comparison.py --help), e.g.
#   bash scripts/mgvton/compare.sh --parse_steps 2000 --gmm_steps 1000 --warp_steps 2000 --refine_steps 500 --gpu_ids 0
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/setup_env.sh
python multipose_comparison.py --out multipose "$@"
