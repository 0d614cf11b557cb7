#!/usr/bin/env bash
# Build llama.cpp's Python binding (llama-cpp-python) from its PyPI source package, CPU only and without the
# tools/server/multimodal parts, into .cache/llama_cpp/ under the repo root. The slow GGUF test imports it from
# there (tests/hf/test_gguf_llama_cpp.py); a second run reuses the built wheel. Takes ~10-20 min on 2 cores.
# Usage: bash scripts/build_llama_cpp.sh [VERSION]
set -euo pipefail
VERSION="${1:-0.3.36}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="$ROOT/.cache/llama_cpp"
SITE="$CACHE/site-$VERSION"
mkdir -p "$CACHE/wheels"
if [ -f "$SITE/llama_cpp/__init__.py" ] && [ -d "$SITE/diskcache" ]; then echo "llama-cpp-python $VERSION already in $SITE"; exit 0; fi
export CMAKE_ARGS="${CMAKE_ARGS:-} -DLLAVA_BUILD=OFF -DGGML_OPENMP=OFF -DGGML_BLAS=OFF -DLLAMA_OPENSSL=OFF \
 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
if ! ls "$CACHE/wheels"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
  nice -n 10 python3 -m pip wheel --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -w "$CACHE/wheels"
fi
# --target keeps the binding (and diskcache, its one dependency the project lacks) out of the system
# site-packages; numpy, jinja2 and typing-extensions come from the environment.
python3 -m pip install --no-deps --upgrade --target "$SITE" "$CACHE/wheels"/llama_cpp_python-"$VERSION"-*.whl "diskcache>=5.6.1"
echo "llama-cpp-python $VERSION installed in $SITE"
