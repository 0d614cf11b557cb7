#!/usr/bin/env bash
# Build llama.cpp's `llama-server` (CPU only, no OpenSSL/curl, no web UI) from the llama.cpp source vendored in the
# llama-cpp-python PyPI source package (the same version scripts/build_llama_cpp.sh builds the binding from), into
# .cache/llama_cpp/ under the repo root. The slow serving test runs it from there
# (tests/hf/test_gguf_llama_server.py); a second run reuses the binary. Takes ~6 min on 2 cores.
# Usage: bash scripts/build_llama_server.sh [VERSION]
set -euo pipefail
VERSION="${1:-0.3.36}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="$ROOT/.cache/llama_cpp"
BIN="$CACHE/llama-server-$VERSION"
if [ -x "$BIN" ]; then echo "llama-server $VERSION already at $BIN"; exit 0; fi
SDIST="$CACHE/sdist/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
  python3 -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$CACHE/sdist"
fi
SRC="$CACHE/src-$VERSION"
if [ ! -f "$SRC/vendor/llama.cpp/CMakeLists.txt" ]; then
  rm -rf "$SRC" && mkdir -p "$SRC"
  tar xzf "$SDIST" -C "$SRC" --strip-components=1
fi
BUILD="$CACHE/server-build-$VERSION"
# The UI options keep the build offline: without them cmake fetches the prebuilt web UI from a Hugging Face bucket.
nice -n 10 cmake -S "$SRC/vendor/llama.cpp" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_OPENMP=OFF -DGGML_BLAS=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
nice -n 10 cmake --build "$BUILD" --target llama-server -j"${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
cp "$BUILD/bin/llama-server" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
echo "llama-server $VERSION built at $BIN"
