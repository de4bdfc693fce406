# Sourced by the device-machine scripts (vram_multi_gpu_device.sh, tune_device.sh,
# fit_device.sh): a CUDA llama-server in $BUILD/bin and the full-size gpt-oss-20b-shaped
# model in $MODEL, each reused when an earlier call on the same machine left it.
# The server comes, first choice, from devbin/lsrv.tar.xz (a stripped static build of an
# earlier call: `tar cJf lsrv.tar.xz -C $BUILD bin/llama-server`, carried back in pieces
# under 16 MiB, ~43 MB, 5 minutes saved a call), else it is built from llama-src.tar.xz
# while the model is written. Needs: OUT, and optionally MODEL_DIR, LAYERS, EXPERTS.
# Sets BUILD, MODEL; returns non-zero (with the build log's tail) when the build fails.
SRC=/tmp/lcpsrc; BUILD=/tmp/lcpbuild; MODEL=${MODEL_DIR:-/tmp/m20}
LAYERS=${LAYERS:-24}; EXPERTS=${EXPERTS:-32}

device_prepare() {
  local bpid=""
  nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
  if [ ! -x "$BUILD/bin/llama-server" ] && [ -f devbin/lsrv.tar.xz ]; then
    mkdir -p "$BUILD" && tar xJf devbin/lsrv.tar.xz -C "$BUILD"
  fi
  if [ ! -x "$BUILD/bin/llama-server" ]; then
    rm -rf "$SRC" && mkdir -p "$SRC" && tar xJf llama-src.tar.xz -C "$SRC"
    ( cmake -S "$SRC/llama.cpp" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
        -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_USE_PREBUILT_UI=OFF \
      && cmake --build "$BUILD" -j"$(nproc)" --target llama-server ) >"$OUT/build.log" 2>&1 &
    bpid=$!
  fi
  if [ ! -f "$MODEL/done" ]; then
    python3 bench/vram_multi_gpu.py gen --dir "$MODEL" --layers "$LAYERS" --experts "$EXPERTS" && touch "$MODEL/done"
  fi
  if [ -n "$bpid" ]; then
    wait "$bpid" || { echo "build failed"; tail -40 "$OUT/build.log"; return 1; }
  fi
}
