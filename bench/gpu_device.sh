#!/usr/bin/env bash
# The GPU area on a real NVIDIA machine (real NVML, no fake): run from the repository root
# after `pip install --no-deps .` plus the wheels of the missing dependencies.
#   bash bench/gpu_device.sh            # writes everything under $OUT (default: a temp dir)
# Nothing is downloaded: `vram plan` plans prod / dev from the catalog sizes and the known
# gpt-oss architecture (the plan says it is approximate). Every command's stdout, stderr
# and exit code are kept; summary.txt has them in order.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d /tmp/ossctl-gpu.XXXXXX)}"
mkdir -p "$OUT"
export OSSCTL_HOME="$(mktemp -d /tmp/ossctl-home.XXXXXX)"  # empty: no models, no config
unset OSSCTL_FAKE_NVML OSSCTL_CONFIG
if command -v ossctl >/dev/null; then OSSCTL=(ossctl); else OSSCTL=(python3 -m ossctl); fi
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"

run() {  # run NAME ARGS...: ossctl ARGS > NAME.out, NAME.err; rc and output into the summary
  local name=$1; shift
  local t0 t1 rc
  t0=$(date +%s%N)
  "${OSSCTL[@]}" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
  rc=$?
  t1=$(date +%s%N)
  {
    printf '\n== %s: ossctl %s  (rc=%s, %.2fs)\n' "$name" "$*" "$rc" "$(( (t1 - t0) / 1000000 ))e-3"
    cat "$OUT/$name.out"
    [ -s "$OUT/$name.err" ] && sed 's/^/[stderr] /' "$OUT/$name.err"
  } >>"$SUMMARY"
}

{
  echo "host $(hostname) $(date -u +%FT%TZ)"
  python3 -c 'import sys, pynvml; print("python", sys.version.split()[0], "nvidia-ml-py", getattr(pynvml, "__version__", "?"))' 2>&1
  nvidia-smi --query-gpu=index,name,memory.total,memory.used,memory.free,utilization.gpu,temperature.gpu,power.draw --format=csv 2>&1
  nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv 2>&1
} >"$OUT/nvidia-smi.txt"
cat "$OUT/nvidia-smi.txt" >>"$SUMMARY"

run watch_once_json --json vram watch --once
run watch_count3 vram watch --count 3 --interval 1
run watch_alert_exit vram watch --count 2 --interval 1 --alert-above 1% --exit-on-alert  # expect rc=8 if >1% used
run watch_bad_gpu vram watch --once --gpu 99  # expect rc=2, unknown GPU id
run plan_prod vram plan --profile prod
run plan_prod_json --json vram plan --profile prod
run plan_dev vram plan --profile dev
run plan_dev_json --json vram plan --profile dev
run plan_prod_1x97GB vram plan --profile prod --gpus 1x97GB
run plan_prod_4x80GiB vram plan --profile prod --gpus 4x80GiB
run plan_120b_1x40GiB vram plan --model 120b --ctx 131072 --gpus 1x40GiB  # does not fit: suggestions
run plan_prod_parallel4 vram plan --profile prod --parallel 4 --ctx 524288

echo >>"$SUMMARY"; echo "== bench/vram_snapshot.py (real NVML, 60 s at 1 Hz)" >>"$SUMMARY"
python3 bench/vram_snapshot.py --seconds "${BENCH_SECONDS:-60}" --iterations 300 --json-out "$OUT/bench_vram.json" \
  >"$OUT/bench_vram.txt" 2>&1
echo "rc=$?" >>"$OUT/bench_vram.txt"
cat "$OUT/bench_vram.txt" >>"$SUMMARY"
echo "results in $OUT"
