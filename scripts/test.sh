#!/usr/bin/env bash
# Set up (if needed) and run the default test suite: CPU only, `slow` and `gpu` tests deselected.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` or `bash scripts/test.sh tests/model`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m pytest -q "$@"
