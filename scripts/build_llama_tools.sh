#!/usr/bin/env bash
# Build llama.cpp's own benchmark tools (llama-bench, llama-batched-bench) from the llama.cpp sources
# vendored in the pinned llama-cpp-python sdist (scripts/llama_cpp_source.sh), so the harness's speed floor can be checked against
# llama.cpp's tools on the same code (README, "Speed"). CPU build with the pip build's settings:
# llama-cpp-python's CMakeLists.txt (https://github.com/abetlen/llama-cpp-python/blob/main/CMakeLists.txt)
# builds shared libraries, Release, LLAMA_CURL off and llama.cpp's defaults otherwise (GGML_NATIVE on).
# Usage: scripts/build_llama_tools.sh OUT_DIR   (binaries in OUT_DIR/cmake/bin; does nothing when they exist)
set -euo pipefail
out="${1:-build/llama-tools}"
py="${PYTHON:-.venv/bin/python}"
if [[ -x "$out/cmake/bin/llama-bench" && -x "$out/cmake/bin/llama-batched-bench" ]]; then
  echo "llama.cpp tools already built in $out/cmake/bin"; exit 0
fi
version="$("$py" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"
src="$(PYTHON="$py" scripts/llama_cpp_source.sh build/llama-cpp-src)"
mkdir -p "$out"
cmake -S "$src" -B "$out/cmake" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=OFF > "$out/cmake.log" 2>&1
cmake --build "$out/cmake" --target llama-bench llama-batched-bench -j "$(nproc)" > "$out/build.log" 2>&1 || { tail -20 "$out/build.log" >&2; exit 1; }
echo "built: $out/cmake/bin/llama-bench, $out/cmake/bin/llama-batched-bench (llama.cpp from llama-cpp-python $version)"
