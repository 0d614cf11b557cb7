#!/usr/bin/env bash
# Installs refact-train and everything it needs into the current Python environment (a fresh machine included).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  # torch first, pinned: a bare `torch` requirement resolved by pip pulls a multi-GB CUDA build.
  echo "setup: no torch found, installing torch==2.13.0"
  "$PYTHON" -m pip install -q "torch==2.13.0"
fi
"$PYTHON" -m pip install -q -e ".[dev]"
