#!/usr/bin/env bash
# Event-bus and reporting figures (release build with the kafka feature, one instance each):
#   - reporting events accepted per second, on MariaDB and on the embedded default (SQLite);
#   - outbox events published per second to the Kafka broker (MariaDB) and to the database's own log (SQLite);
#   - commit→consumer lag p50/p99 at a steady 2,000 events/s.
# Uses the broker and the wxshop_test MariaDB account scripts/services.sh provides (a database of its own, dropped).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh >/dev/null
cargo build --release --locked --features kafka --bin wxshop --example events_bench
DB=wxshop_test_bench_events
SERVER=mysql://wxshop_test:wxshop_test@127.0.0.1:3306
mysql_cmd() { mysql -h127.0.0.1 -uwxshop_test -pwxshop_test -e "$1" 2>/dev/null; }
mysql_cmd "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
WORK=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; mysql_cmd "DROP DATABASE IF EXISTS $DB" || true; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
start() { # name port extra-env...
  local name="$1" port="$2"; shift 2
  mkdir -p "$WORK/$name"
  env -i PATH="$PATH" HOME="$HOME" WXSHOP_LISTEN="127.0.0.1:$port" WXSHOP_OPS_LISTEN=127.0.0.1:0 \
    WXSHOP_DATA_DIR="$WORK/$name" WXSHOP_LOG__FILTER=error WXSHOP_DB__SEED_DEMO=true \
    WXSHOP_RATE_LIMIT__TRACK_PER_USER=0 WXSHOP_RATE_LIMIT__TRACK_PER_IP=0 "$@" \
    target/release/wxshop serve >"$WORK/$name/server.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "the $name server did not become ready" >&2; exit 1
}
echo "machine: $(nproc) cores; commit $(git rev-parse --short HEAD); $(date -u +%FT%TZ)"
P1=$(free_port)
start mariadb "$P1" WXSHOP_DATABASE_URL="$SERVER/$DB" WXSHOP_EVENTS__KAFKA_BROKERS=127.0.0.1:19092 \
  WXSHOP_EVENTS__TOPIC_PREFIX="bench-$(date +%s)."
echo "== MariaDB, events to Kafka"
target/release/examples/events_bench report "http://127.0.0.1:$P1"
target/release/examples/events_bench relay "http://127.0.0.1:$P1" "$SERVER/$DB"
P2=$(free_port)
start sqlite "$P2"
echo "== embedded (SQLite), events to the database's log"
target/release/examples/events_bench report "http://127.0.0.1:$P2"
target/release/examples/events_bench relay "http://127.0.0.1:$P2" "sqlite://$WORK/sqlite/wxshop.db"
