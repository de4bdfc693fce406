#!/usr/bin/env bash
# One device-machine call for bench/vram_multi_gpu.py: build a CUDA llama-server from
# the pinned llama.cpp sources (a tarball of llama-cpp-python 0.3.36's vendor/llama.cpp,
# models/docs/tests and unused ggml backends left out), write the full-size model while
# it builds, then run the cases; a build or model left by an earlier call on the same
# machine is reused.
#   bash bench/vram_multi_gpu_device.sh CASES HOSTTAG [SECONDS]
# CASES: groups of CASES in vram_multi_gpu.py, comma-separated (1gpu,2gpu,...). Everything
# lands in $OUT: results.jsonl, logs.tgz (every server log), build.log, nvidia-smi.txt.
# Run from a folder holding ossctl/, bench/ and llama-src.tar.xz, made with:
#   pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/lcp
#   tar xzf /tmp/lcp/llama_cpp_python-0.3.36.tar.gz -C /tmp/lcp
#   tar cJf llama-src.tar.xz -C /tmp/lcp/llama_cpp_python-0.3.36/vendor --exclude=llama.cpp/models \
#     --exclude=llama.cpp/docs --exclude=llama.cpp/tests llama.cpp   (6.5 MB with the unused
#     ggml backends left out too: it travels to the device machine, 64 MiB at most)
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
CASES=${1:-1gpu}; HOSTTAG=${2:-}; LIMIT=${3:-500}
OUT=${OUT:-/tmp/bench12-out}; mkdir -p "$OUT"
. bench/device_prepare.sh
device_prepare || exit 1
echo "ready after $(( $(date +%s) - T0 )) s"
mkdir -p /tmp/bench12-logs
BUDGET=$(( LIMIT - ($(date +%s) - T0) ))
PYTHONUNBUFFERED=1 BENCH_LOGDIR=/tmp/bench12-logs python3 bench/vram_multi_gpu.py run --dir "$MODEL" \
  --bin "$BUILD/bin" --cases "$CASES" --out "$OUT/results.jsonl" --host "$HOSTTAG" --budget "$BUDGET"
tar czf "$OUT/logs.tgz" -C /tmp bench12-logs
echo "done after $(( $(date +%s) - T0 )) s"
