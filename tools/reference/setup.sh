#!/usr/bin/env bash
# Creates the Python virtual environment of the reference harness (outside the repository: it is
# 4-6 GB because PyPI's torch wheel pulls the nvidia-* packages).
#   bash tools/reference/setup.sh            # venv in $HD_PAINTER_VENV or ~/.cache/hd-painter/venv
# CI never needs it: the fixtures it produces are committed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${HD_PAINTER_VENV:-$HOME/.cache/hd-painter/venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
echo "reference venv ready: $venv"
