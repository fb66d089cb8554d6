#!/usr/bin/env bash
# Two wxshop builds side by side in one run: A on :8081, B on :8082, both pinned to core 0 against the same
# MariaDB + Redis data, measured interleaved (A, B, B, A, …) by ../shared/bench/bench.py, whose ratio columns take
# the first target (A) as the reference. Use it for before/after figures.
#
#   cp target/release/wxshop /tmp/wxshop-before   # …change, cargo build --release…
#   bash bench/ab.sh /tmp/wxshop-before target/release/wxshop
#   SCENARIOS=healthz DURATION=8 REPEATS_ORDER_ID=3 bash bench/ab.sh A B
#
# Needs the data bench/run.sh leaves behind (database wxshop_bench, its tokens file): run that once first.
# Extra environment for one side: ENV_A / ENV_B, e.g. ENV_B="MALLOC_CONF=narenas:1".
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=$(cd ../shared && pwd)
A=$(realpath "$1")
B=$(realpath "$2")
LAST=$(ls -td /tmp/wxshop-bench/[0-9]*/ 2>/dev/null | head -1)
PAIRS=${PAIRS:-${LAST}pairs-wxshop.txt}
[ -s "$PAIRS" ] || { echo "no tokens file ($PAIRS): run bash bench/run.sh once first" >&2; exit 1; }
OUT=/tmp/wxshop-bench/ab-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
bash "$SHARED/bench/services.sh" >/dev/null

export WXSHOP_DATABASE_URL=mysql://bench:bench@127.0.0.1:3306/wxshop_bench
export WXSHOP_REDIS_URL=redis://127.0.0.1:6379/1
export WXSHOP_LOG__FILTER=error
export WXSHOP_AUTH__ACCESS_TTL_SECS=86400
export WXSHOP_DB__MIGRATE_ON_START=false
start() { # binary port ops-port extra-env
  env $4 WXSHOP_LISTEN=127.0.0.1:$2 WXSHOP_OPS_LISTEN=127.0.0.1:$3 WXSHOP_DATA_DIR="$OUT/data-$2" \
    taskset -c 0 "$1" serve >"$OUT/server-$2.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "the server on :$2 did not become ready" >&2
  exit 1
}
start "$A" 8081 9091 "${ENV_A:-}"
start "$B" 8082 9092 "${ENV_B:-}"
sleep 1
for pid in "${PIDS[@]}"; do echo "idle RSS pid $pid: $(awk '/^VmRSS/ {print $2}' /proc/$pid/status) KiB"; done
DATA=$PAIRS OUTDIR=$OUT python3 "$SHARED/bench/bench.py" A=http://127.0.0.1:8081 B=http://127.0.0.1:8082 | tee "$OUT/ab.txt"
for pid in "${PIDS[@]}"; do echo "peak RSS pid $pid: $(awk '/^VmHWM/ {print $2}' /proc/$pid/status) KiB"; done
