#!/usr/bin/env bash
# The GPU check in one command (about 7 min on one H200):
#     bash scripts/gpu_check.sh [OUT_DIR]          # default OUT_DIR: gpu_check/
# writes OUT_DIR/report.md, OUT_DIR/report.json and OUT_DIR/gpu_check.log. Without a CUDA GPU it says
# so and exits 0; GPU_CHECK_DEVICE=cpu dry-runs every part on the CPU. What it runs, its time guard
# and its GPU_CHECK_* settings: see gpu_check.py. Nothing is downloaded.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The project's environment where there is one (scripts/setup_env.sh makes it), else the machine's Python.
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHON PYTHONUNBUFFERED=1
exec "$PYTHON" gpu_check.py "$@"
