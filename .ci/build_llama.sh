#!/usr/bin/env bash
# Build a CPU llama-server and llama-gguf-split from the llama.cpp sources that ship
# inside the llama-cpp-python sdist on PyPI. The result is cached outside the clone,
# keyed by the sdist version, so CI rebuilds only when the version changes or the cache
# is missing. Prints the bin directory on stdout.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
# The llama.cpp release the sdist vendors: its CHANGELOG names the commit, the release tag
# of that commit is the build the shipped profiles pin (tests/unit/test_llama_flags.py
# checks they agree). Stamped into the binary, so `llama-server --version` says that build
# instead of the "1" the sdist's shallow git history gives.
case "$VERSION" in
  0.3.36) LLAMA_TAG=b11312; LLAMA_COMMIT=0c1e570 ;;
  *) LLAMA_TAG="${LLAMA_CPP_TAG:?set LLAMA_CPP_TAG=bNNNN for llama-cpp-python $VERSION}"
     LLAMA_COMMIT="${LLAMA_CPP_COMMIT:?set LLAMA_CPP_COMMIT (7 hex digits) for llama-cpp-python $VERSION}" ;;
esac
CACHE="${OSSCTL_CI_CACHE:-$HOME/.cache/ossctl-ci}"
OUTDIR="$CACHE/llama-cpp-$VERSION"
if [ -x "$OUTDIR/bin/llama-server" ] && [ -x "$OUTDIR/bin/llama-gguf-split" ] \
   && "$OUTDIR/bin/llama-server" --version 2>&1 | grep -q "(build ${LLAMA_TAG#b}, commit $LLAMA_COMMIT)"; then
  echo "$OUTDIR/bin"; exit 0
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 -m pip download -q --no-deps --no-binary :all: -d "$WORK" "llama-cpp-python==$VERSION" >&2
tar -xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_NUMBER="${LLAMA_TAG#b}" -DLLAMA_BUILD_COMMIT="$LLAMA_COMMIT" >&2
cmake --build "$WORK/build" -j"$(nproc)" --target llama-server llama-gguf-split >&2
mkdir -p "$OUTDIR.tmp/bin"
cp "$WORK/build/bin/llama-server" "$WORK/build/bin/llama-gguf-split" "$OUTDIR.tmp/bin/"
rm -rf "$OUTDIR" && mv "$OUTDIR.tmp" "$OUTDIR"
echo "$OUTDIR/bin"
