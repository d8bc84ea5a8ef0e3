#!/usr/bin/env bash
# The README's test command: installs what it needs, then runs the whole test suite on the CPU.
# Extra arguments go to pytest (e.g. -k dataset, -x).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh
python -m pytest tests -q -p no:cacheprovider "$@"
