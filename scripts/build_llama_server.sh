#!/usr/bin/env bash
# llama.cpp's llama-server, built from the llama.cpp sources of the pinned llama-cpp-python sdist (the same
# commit as the in-process engine; scripts/llama_cpp_source.sh), for the OpenAI-compatible-server tests and
# the `server` routes of scripts/bench_backends.py. Built once and cached; prints the binary's path as the
# last line of stdout (progress goes to stderr).
#
# CPU settings, two modes:
# - default: compiled for this machine, as pip compiled the engine (llama-cpp-python's CMakeLists.txt keeps
#   llama.cpp's default GGML_NATIVE=ON). The server then runs the same CPU kernels as the engine, which the
#   tests need: they compare its greedy answers with the in-process ones. Cached per CPU (a hash of the
#   model name and instruction-set flags in /proc/cpuinfo), so a build/ folder carried to another CPU
#   (a CI cache, a copied checkout) is rebuilt there, never run: that is how a prebuilt binary dies with
#   SIGILL ("Illegal instruction") on a CPU that lacks an instruction it was compiled for.
# - PORTABLE=1: GGML_NATIVE=OFF with GGML_BACKEND_DL=ON GGML_CPU_ALL_VARIANTS=ON, llama.cpp's own
#   release setting: one libggml-cpu-<variant>.so per x86 level (x64 ... sapphirerapids), the best one this
#   CPU supports picked at run time. For a binary to copy to other machines; ~12 CPU back-ends to compile,
#   so it takes several times longer.
# Usage: scripts/build_llama_server.sh [OUT_ROOT]   (JOBS=2 parallel jobs)
# OUT_ROOT defaults to the user's cache, like pip's wheel cache: ${XDG_CACHE_HOME:-~/.cache}/llama-bench-harness/
# llama-server, so a fresh clone on a machine that built it once (a CI runner, a second checkout) reuses it.
set -euo pipefail
root="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/llama-bench-harness/llama-server}"
py="${PYTHON:-.venv/bin/python}"
jobs="${JOBS:-2}"
version="$("$py" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"
if [[ "${PORTABLE:-0}" == 1 ]]; then
  key="portable"
  cpu_args=(-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON)
else
  key="native-$( { grep -m1 '^model name' /proc/cpuinfo || true; grep -m1 -E '^(flags|Features)' /proc/cpuinfo || true; } \
    | sha256sum | cut -c1-12)"
  cpu_args=(-DGGML_NATIVE=ON)
fi
out="$root/$version-$key"
bin="$out/cmake/bin/llama-server"
mkdir -p "$root"
exec 9>"$out.lock"
flock 9  # one build at a time (a test session and a benchmark may ask together)
if [[ -x "$bin" && -f "$out/built" ]]; then
  echo "$bin"; exit 0
fi
src="$(PYTHON="$py" scripts/llama_cpp_source.sh build/llama-cpp-src)"
rm -rf "$out"
mkdir -p "$out"
echo "building llama-server from llama-cpp-python $version's llama.cpp ($key, -j$jobs; once per CPU;" \
     "43 min on 2 cores shared with other jobs; log: $out/build.log)" >&2
started=$SECONDS
# As the pip build (https://github.com/abetlen/llama-cpp-python/blob/main/CMakeLists.txt): shared libraries,
# Release, no curl; only the server target is compiled (with GGML_BACKEND_DL, ggml depends on each CPU
# back-end module, so they are built too: ggml/src/CMakeLists.txt, ggml_add_backend_library).
cmake -S "$src" -B "$out/cmake" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
  "${cpu_args[@]}" > "$out/cmake.log" 2>&1 || { tail -20 "$out/cmake.log" >&2; exit 1; }
cmake --build "$out/cmake" --target llama-server -j "$jobs" > "$out/build.log" 2>&1 \
  || { tail -20 "$out/build.log" >&2; exit 1; }
"$bin" --version > "$out/version.txt" 2>&1 || { cat "$out/version.txt" >&2; exit 1; }
touch "$out/built"
echo "built $bin in $((SECONDS - started)) s ($(grep -m1 '^version' "$out/version.txt" || head -1 "$out/version.txt"))" >&2
echo "$bin"
