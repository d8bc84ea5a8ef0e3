#!/usr/bin/env bash
# Train and test the original CP-VTON and each CP-VTON+ option on the same data, seed and step budget,
# then write <out>/ablation.md (default ablation/ablation.md). About 20 minutes on 2 CPU cores with the
# default budget; every argument goes to ablation.py (python ablation.py --help), e.g.
#   bash scripts/ablation.sh --gmm_steps 20000 --tom_steps 20000 --dataroot data --batch_size 8 --out ablation_full
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh
python ablation.py "$@"
