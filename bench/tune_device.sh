#!/usr/bin/env bash
# One device-machine call (nvidia-h200, <= 10 min) for `ossctl tune` on a real GPU: build a
# CUDA llama-server from the pinned sources and write the full-size gpt-oss-20b-shaped model
# (both as bench/vram_multi_gpu_device.sh does, reused when an earlier call left them), then
# tune the shipped prod profile with that model, ctx 32768, at 16 users, 256 output tokens,
# 2 requests per user, SLA "p95<60s,errors<1%", over parallel=1,16,32 x ubatch=512,2048
# (coordinate descent from prod's parallel 1 / ubatch 512, --min-ctx-per-slot 4096), with the
# time left in the call: prod itself (~60 s: one slot for 16 users), then parallel 16 and 32 at
# ubatch 512, then ubatch 2048 at the better (~35 s each): 4-6 trials in ~4 minutes.
# USERS, SLA, SPACE, REQUESTS, MAX_TRIALS override those (e.g. SPACE="parallel=1,8,16,32 ubatch=512,2048"
# in a call with the build already there).
# There is no Docker there: trials are native llama-server processes (NativeRuntime).
#   bash bench/tune_device.sh [SECONDS_FOR_THE_CALL]      (default 560)
# Results land in $OUT: tune.json, tune.txt, tunebench-tuned.toml, tune.log, build.log,
# nvidia-smi.txt, server-logs/. Copy them to bench/results/tune_h200.* afterwards.
# Run from a folder holding ossctl/, bench/ and llama-src.tar.xz (see vram_multi_gpu_device.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
LIMIT=${1:-560}
OUT=${OUT:-/tmp/tune-out}; mkdir -p "$OUT"
# ossctl's tune runs in-process (no docker SDK needed): check what it imports before the build
python3 -c 'import httpx, tomli_w, pynvml' 2>"$OUT/imports.txt" || {
  echo "missing Python packages for ossctl on this machine:"; cat "$OUT/imports.txt"
  echo "install ossctl's wheels first (pip install --no-deps . plus httpx, tomli-w, nvidia-ml-py)"; exit 1; }
. bench/device_prepare.sh
device_prepare || exit 1
echo "ready after $(( $(date +%s) - T0 )) s"
# leave 20 s for writing the results: --time stops starting trials once the next one would not fit
LEFT=$(( LIMIT - ($(date +%s) - T0) - 20 ))
[ "$LEFT" -gt 60 ] || { echo "only $LEFT s left for the tune"; exit 1; }
USERS=${USERS:-16}
PYTHONUNBUFFERED=1 python3 bench/tune_device.py --model-dir "$MODEL" --bin "$BUILD/bin" --out "$OUT" \
  --users "$USERS" --sla "${SLA:-p95<60s,errors<1%}" --time "${LEFT}s" \
  --space "${SPACE:-parallel=1,16,32 ubatch=512,2048}" --requests "${REQUESTS:-$(( 2 * USERS ))}" \
  --ctx 32768 --min-ctx-per-slot 4096 --max-tokens 256 --max-trials "${MAX_TRIALS:-12}"
echo "done after $(( $(date +%s) - T0 )) s"
