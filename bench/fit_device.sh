#!/usr/bin/env bash
# One device-machine call (one H200) for bench/fit_device.py (issue 23): build a CUDA
# llama-server from the pinned llama.cpp sources while the gpt-oss-20b-shaped model is
# written, then run the two cases (fit = false, fit = true) on a GPU made tight by a
# ballast so that ossctl's plan leaves < 1 GiB free. A build or model left by an earlier
# call on the same machine (bench/vram_multi_gpu_device.sh uses the same paths) is reused.
# No docker on the device: llama-server runs natively with the argv `ossctl deploy` builds.
#   bash bench/fit_device.sh [CTX] [LEAVE_MIB] [SECONDS]
# Everything lands in $OUT: fit_results.jsonl, logs.tgz (both server logs), build.log,
# nvidia-smi.txt. Run from a folder holding ossctl/, bench/ and llama-src.tar.xz, made as
# bench/vram_multi_gpu_device.sh says:
#   pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/lcp
#   tar xzf /tmp/lcp/llama_cpp_python-0.3.36.tar.gz -C /tmp/lcp
#   tar cJf llama-src.tar.xz -C /tmp/lcp/llama_cpp_python-0.3.36/vendor --exclude=llama.cpp/models \
#     --exclude=llama.cpp/docs --exclude=llama.cpp/tests llama.cpp
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
CTX=${1:-32768}; LEAVE=${2:-128}
OUT=${OUT:-/tmp/fit-out}; mkdir -p "$OUT"
. bench/device_prepare.sh
device_prepare || exit 1
echo "ready after $(( $(date +%s) - T0 )) s"
mkdir -p /tmp/fit-logs
PYTHONUNBUFFERED=1 BENCH_LOGDIR=/tmp/fit-logs python3 bench/fit_device.py --dir "$MODEL" --bin "$BUILD/bin" \
  --ctx "$CTX" --leave "$LEAVE" --out "$OUT/fit_results.jsonl"
tar czf "$OUT/logs.tgz" -C /tmp fit-logs
echo "done after $(( $(date +%s) - T0 )) s"
