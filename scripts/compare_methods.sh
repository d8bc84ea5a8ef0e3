#!/usr/bin/env bash
# Train and test CP-VTON, CP-VTON+, VITON and WUTON on the same data, seed and step budget, with a noise row (CP-VTON
# with another seed), then write <out>/ablation.md (default methods/ablation.md): the table, the same hard pairs
# per method and the gallery. Every argument goes to ablation.py (python ablation.py --help), e.g.
#   bash scripts/compare_methods.sh --dataroot data --gmm_steps 20000 --tom_steps 20000 \
#       --viton_coarse_steps 15000 --viton_refine_steps 15000 --wuton_steps 20000 --batch_size 8 --out methods_full
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh
python ablation.py --variants baseline,cpvton_plus,viton,viton_parse_mask,wuton --out methods "$@"
