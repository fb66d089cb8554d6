#!/usr/bin/env bash
# Flash-sale purchase attempts against a release build on MariaDB + Redis: 5,000 buyers (seed-demo), wrk with
# rotating tokens, server and load generator pinned to different cores. Two phases:
#   1. a sale of 100 units (limit 1): the burst sells out, then the sold-out fast path answers from memory;
#   2. a sale that has not started: every attempt goes through the deny-list, the rate limits and the Lua script
#      in Redis (the cost of an attempt that reaches Redis).
# Prints wrk's figures and how the attempts were answered (`sold_out_fast` never reached Redis).
#
#   bash bench/flash-sale.sh [connections=64] [seconds=10]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-64}
SECONDS_=${2:-10}
PORT=${WXSHOP_BENCH_PORT:-18080}
WORK=$(mktemp -d)
trap 'kill "${SERVER:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

bash scripts/services.sh
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q wrk >/dev/null; else sudo apt-get install -y -q wrk >/dev/null; fi
fi
cargo build --release --quiet
BIN=target/release/wxshop

DB=wxshop_test_bench
mysql -uwxshop_test -pwxshop_test -h127.0.0.1 -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
redis-cli --scan --pattern 'wxshop-bench:*' | xargs -r redis-cli del >/dev/null
export WXSHOP_DATABASE_URL="mysql://wxshop_test:wxshop_test@127.0.0.1:3306/$DB"
export WXSHOP_REDIS_URL=redis://127.0.0.1:6379/0
export WXSHOP_REDIS_PREFIX=wxshop-bench:
export WXSHOP_DATA_DIR="$WORK"
export WXSHOP_LISTEN="127.0.0.1:$PORT"
export WXSHOP_OPS_LISTEN="127.0.0.1:$((PORT + 1))"
export WXSHOP_LOG__FILTER=error
export WXSHOP_RATE_LIMIT__PURCHASE_PER_USER=1000
export WXSHOP_RATE_LIMIT__PURCHASE_PER_IP=0
export WXSHOP_AUTH__ACCESS_TTL_SECS=3600

$BIN seed-demo --users 5000 >/dev/null
$BIN dev-tokens --count 5000 >"$WORK/tokens.txt"
echo 'bench-admin-password' | $BIN admin create --username bench --role operator >/dev/null

taskset -c 0 $BIN serve &
SERVER=$!
for _ in $(seq 100); do curl -sf "localhost:$PORT/readyz" >/dev/null && break; sleep 0.1; done
ADM=$(curl -s -XPOST "localhost:$PORT/admin/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"username":"bench","password":"bench-admin-password"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
SKU=$(curl -s "localhost:$PORT/api/v1/products/1" | sed 's/.*"skus":\[{"id":\([0-9]*\).*/\1/')
curl -s -XPOST "localhost:$PORT/admin/api/v1/skus/$SKU/stock" -H "authorization: Bearer $ADM" \
  -H 'content-type: application/json' -d '{"delta":1000,"reason":"bench"}' >/dev/null
SALE=$(curl -s -XPOST "localhost:$PORT/admin/api/v1/flash-sales" -H "authorization: Bearer $ADM" \
  -H 'content-type: application/json' \
  -d "{\"sku_id\":$SKU,\"price_fen\":990,\"stock\":100,\"per_user_limit\":1,\"starts_at\":\"$(date -u +%FT%TZ)\",\"ends_at\":\"$(date -u -d '+1 hour' +%FT%TZ)\"}" \
  | sed 's/{"id":\([0-9]*\).*/\1/')

echo "phase 1: flash-sale purchase attempts: sale $SALE, 100 units, 5000 buyers, -c$CONNECTIONS for ${SECONDS_}s"
WXSHOP_BENCH_TOKENS="$WORK/tokens.txt" WXSHOP_BENCH_SALE=$SALE \
  taskset -c 1 wrk -t1 "-c$CONNECTIONS" "-d${SECONDS_}s" --latency -s bench/flash_purchase.lua "http://127.0.0.1:$PORT"
echo "answers (flash_sale_attempts_total; sold_out_fast never reached Redis):"
curl -s "localhost:$((PORT + 1))/metrics" | grep '^flash_sale_attempts_total' || true
sleep 1
UPCOMING=$(curl -s -XPOST "localhost:$PORT/admin/api/v1/flash-sales" -H "authorization: Bearer $ADM" \
  -H 'content-type: application/json' \
  -d "{\"sku_id\":$SKU,\"price_fen\":990,\"stock\":100,\"per_user_limit\":1,\"starts_at\":\"$(date -u -d '+1 hour' +%FT%TZ)\",\"ends_at\":\"$(date -u -d '+2 hour' +%FT%TZ)\"}" \
  | sed 's/{"id":\([0-9]*\).*/\1/')
echo
echo "phase 2: attempts on sale $UPCOMING, not started yet: every one reaches Redis, -c$CONNECTIONS for ${SECONDS_}s"
WXSHOP_BENCH_TOKENS="$WORK/tokens.txt" WXSHOP_BENCH_SALE=$UPCOMING \
  taskset -c 1 wrk -t1 "-c$CONNECTIONS" "-d${SECONDS_}s" --latency -s bench/flash_purchase.lua "http://127.0.0.1:$PORT"
curl -s "localhost:$((PORT + 1))/metrics" | grep '^flash_sale_attempts_total' || true
echo "orders made: $(mysql -N -uwxshop_test -pwxshop_test -h127.0.0.1 $DB -e "SELECT COUNT(*) FROM shop_order WHERE flash_sale_id = $SALE")"
echo "server RSS: $(ps -o rss= -p $SERVER) KiB"
