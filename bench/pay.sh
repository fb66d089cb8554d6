#!/usr/bin/env bash
# Payment figures on MariaDB, one instance (release build, dev mode with the built-in WeChat Pay simulator):
# prepay latency p50/p99 (`POST /api/v1/orders/{id}/pay`, the simulator answering on the same port) and payment
# notifications applied per second (pre-signed and AES-GCM-sealed as WeChat Pay sends them; each must apply once).
#
#   bash bench/pay.sh                # 2000 orders, 32 concurrent notifications
#   N=5000 CONCURRENCY=64 bash bench/pay.sh
#
# Uses the wxshop_test MariaDB account of scripts/services.sh (a database of its own, dropped afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}
CONCURRENCY=${CONCURRENCY:-32}
bash scripts/services.sh >/dev/null
cargo build --release --locked --bin wxshop --example pay_bench
DB=wxshop_test_bench_pay
SERVER=mysql://wxshop_test:wxshop_test@127.0.0.1:3306
mysql_cmd() { mysql -h127.0.0.1 -uwxshop_test -pwxshop_test -e "$1" 2>/dev/null; }
mysql_cmd "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
env -i PATH="$PATH" HOME="$HOME" WXSHOP_DATABASE_URL="$SERVER/$DB" WXSHOP_LISTEN="127.0.0.1:$PORT" \
  WXSHOP_OPS_LISTEN=127.0.0.1:0 WXSHOP_DATA_DIR="$WORK" WXSHOP_LOG__FILTER=error WXSHOP_DB__SEED_DEMO=true \
  target/release/wxshop serve >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; mysql_cmd "DROP DATABASE IF EXISTS $DB" || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
echo "machine: $(nproc) cores; commit $(git rev-parse --short HEAD); MariaDB $(mysql -N -h127.0.0.1 -uwxshop_test -pwxshop_test -e 'SELECT VERSION()' 2>/dev/null)"
target/release/examples/pay_bench "http://127.0.0.1:$PORT" "$SERVER/$DB" "$N" "$CONCURRENCY"
