#!/usr/bin/env bash
# The llama.cpp sources the engine was built from: the pinned llama-cpp-python sdist (`pip download`, cached
# by pip) unpacked once into DEST; prints the path of its vendored llama.cpp tree. One definition for every
# llama.cpp tool this project builds (scripts/build_llama_tools.sh, scripts/build_llama_server.sh), so each
# is compiled from the same commit as the in-process engine.
# Usage: scripts/llama_cpp_source.sh [DEST]   (default build/llama-cpp-src; PYTHON names the venv's python)
set -euo pipefail
dest="${1:-build/llama-cpp-src}"
py="${PYTHON:-.venv/bin/python}"
version="$("$py" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"
tree="$dest/llama_cpp_python-$version/vendor/llama.cpp"
if [[ ! -f "$tree/CMakeLists.txt" ]]; then
  mkdir -p "$dest"
  # pip's notices about this machine's extra (absent) local indexes are noise here; real errors still show.
  "$py" -m pip download --quiet --no-binary :all: --no-deps "llama-cpp-python==$version" -d "$dest" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  [[ -f "$dest/llama_cpp_python-$version.tar.gz" ]] \
    || { echo "pip could not fetch the llama-cpp-python $version sdist (check access to PyPI)" >&2; exit 1; }
  tar -xzf "$dest/llama_cpp_python-$version.tar.gz" -C "$dest"
fi
echo "$tree"
