#!/usr/bin/env bash
# Writes link/startup-order.txt: the functions `wxshop serve` runs from start-up to its first idle seconds, which
# build.rs asks the linker to put first in `.text` (bench/RESULTS.md: idle RSS).
#
#   bash scripts/startup-order.sh                  # the release and profiling builds, embedded default only
#   WXSHOP_DATABASE_URL=mysql://... WXSHOP_REDIS_URL=redis://... bash scripts/startup-order.sh
#                                                  # also the scale-out start-up (sqlx MySQL, Redis)
#   PROFILES=release bash scripts/startup-order.sh
#
# Each profile's symbols carry their own hashes (cargo hashes the profile's settings into them), so the file holds
# the start-up functions of every profile given: the linker orders those it finds and ignores the rest. Re-run it
# when idle RSS grows in the bench: functions added to start-up since the last run land wherever the linker puts
# them. Runs each binary under valgrind's callgrind (it counts every function that runs, not a sample).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
command -v valgrind >/dev/null || { apt-get install -y -q --no-install-recommends valgrind >/dev/null; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PORT=${PORT:-18481}

# Collects the functions of <binary> that one start-up runs, into $WORK/<label>.fns (mangled, as the linker sees them).
trace_start() { # <binary> <label> [env options: -u VAR ...]
  local bin=$1 label=$2 pid
  env "${@:3}" WXSHOP_LISTEN=127.0.0.1:$PORT WXSHOP_OPS_LISTEN=127.0.0.1:$((PORT + 1)) WXSHOP_DATA_DIR=$WORK/data-$label \
    WXSHOP_LOG__FILTER=error valgrind --tool=callgrind --callgrind-out-file="$WORK/cg-$label" --dump-instr=no \
    --compress-strings=no --demangle=no "$bin" serve >"$WORK/log-$label" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$WORK/log-$label" >&2; exit 1; }
  sleep 3 # the first passes of the background workers
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 2
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # fn= lines under the binary's own ob=, kept when the symbol table has them (not callgrind's "'2" recursion copies).
  awk -v ob="ob=$bin" '/^ob=/ {mine = ($0 == ob)} mine && /^fn=/ {print substr($0, 4)}' "$WORK"/cg-"$label".* \
    | sort -u >"$WORK/$label.called"
  nm --defined-only "$bin" | awk '$2 ~ /^[tTwW]$/ {print $3}' | sort -u >"$WORK/$label.defined"
  comm -12 "$WORK/$label.called" "$WORK/$label.defined" >"$WORK/$label.fns"
  echo "startup-order: $label: $(wc -l <"$WORK/$label.fns") functions" >&2
}

for profile in ${PROFILES:-release profiling}; do
  cargo build --quiet --profile "$profile"
  bin=${CARGO_TARGET_DIR:-$ROOT/target}/$profile/wxshop
  trace_start "$bin" "$profile-embedded" -u WXSHOP_DATABASE_URL -u WXSHOP_REDIS_URL
  if [ -n "${WXSHOP_DATABASE_URL:-}" ]; then
    trace_start "$bin" "$profile-scaleout"
  fi
done
{
  echo "# The functions wxshop runs from start-up to idle, first in .text (build.rs). Made by scripts/startup-order.sh"
  echo "# on $(date -u +%F) at $(git rev-parse --short HEAD); profiles: ${PROFILES:-release profiling}."
  sort -u "$WORK"/*.fns
} >link/startup-order.txt
echo "startup-order: link/startup-order.txt: $(grep -vc '^#' link/startup-order.txt) functions" >&2
