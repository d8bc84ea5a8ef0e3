#!/usr/bin/env bash
# Sourced by the README's two commands: makes (once) and activates a virtual environment in .venv
# with requirements.txt installed. Set CPVTON_VENV to use another folder.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CPVTON_VENV:-$repo_root/.venv}"
python_bin="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating virtual environment $venv"
    "$python_bin" -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
wanted="$(sha256sum "$repo_root/requirements.txt" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    echo "[setup] installing requirements.txt into $venv (torch takes about a minute)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$repo_root/requirements.txt"
    echo "$wanted" > "$stamp"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
