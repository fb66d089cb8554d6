#!/usr/bin/env bash
# wxshop against the Gin peer (../shared/peers/gin-seed) and nginx `return 200` (the ceiling for one HTTP
# response), on this machine, one after the other, with the same load generator settings: the shared driver
# ../shared/bench/bench.py (wrk -t1 on core 1; the server, its MariaDB and its Redis on core 0). Then flash-sale
# purchase attempts (wxshop only: a sale that sells out, then the sold-out phase). Prints one table
# (bench/report.py) and leaves everything under /tmp/wxshop-bench/<timestamp>/.
#
#   bash bench/run.sh            # DURATION=15 CONNS="64 400" REPEATS_ORDER_ID=3 by default (see bench.py)
#   DURATION=5 REPEATS_ORDER_ID=1 bash bench/run.sh     # a quick pass
#
# Installs what it needs (Debian packages: wrk, nginx-light, Go and the peer's libraries, MariaDB, Redis).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED=$(cd ../shared && pwd)
OUT=/tmp/wxshop-bench/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
WX_PORT=8081
WX_OPS=9091
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  bash "$SHARED/peers/gin-seed/stop.sh" >/dev/null 2>&1 || true
  bash "$SHARED/bench/hello/hello.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "== packages"
need=()
for p in wrk nginx-light golang-go golang-github-gin-gonic-gin-dev golang-github-gomodule-redigo-dev \
         golang-github-go-sql-driver-mysql-dev golang-github-golang-jwt-jwt-dev mariadb-server mariadb-client \
         redis-server python3 curl; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
bash "$SHARED/bench/services.sh"

echo "== the Gin peer: data, build, tokens"
if ! mysql --protocol=socket -uroot -N -e "SELECT COUNT(*) FROM bench.orders" 2>/dev/null | grep -q '^100000$'; then
  mysql --protocol=socket -uroot < "$SHARED/bench/seed.sql"
fi
bash "$SHARED/peers/gin-seed/build.sh" >/dev/null
/tmp/gin-seed/bin/mint -out "$OUT/pairs-gin.txt" >/dev/null

echo "== wxshop: release build (cargo profile profiling), seed-demo --users 10000 --orders 100000, tokens"
# The `profiling` profile: the release build plus line tables, so that the flame graph names inlined functions.
cargo build --profile profiling --quiet
BIN=$ROOT/target/profiling/wxshop
mysql --protocol=socket -uroot -e "DROP DATABASE IF EXISTS wxshop_bench; CREATE DATABASE wxshop_bench;
  GRANT ALL ON wxshop_bench.* TO 'bench'@'127.0.0.1'; GRANT ALL ON wxshop_bench.* TO 'bench'@'localhost'"
redis-cli -n 1 flushdb >/dev/null
export WXSHOP_DATABASE_URL=mysql://bench:bench@127.0.0.1:3306/wxshop_bench
export WXSHOP_REDIS_URL=redis://127.0.0.1:6379/1
export WXSHOP_DATA_DIR=$OUT/wxshop-data
export WXSHOP_LISTEN=127.0.0.1:$WX_PORT
export WXSHOP_OPS_LISTEN=127.0.0.1:$WX_OPS
export WXSHOP_LOG__FILTER=error
export WXSHOP_AUTH__ACCESS_TTL_SECS=86400
export WXSHOP_RATE_LIMIT__PURCHASE_PER_USER=100000
export WXSHOP_RATE_LIMIT__PURCHASE_PER_IP=0
"$BIN" seed-demo --users 10000 --orders 100000
"$BIN" dev-tokens --count 10000 --orders >"$OUT/pairs-wxshop.txt"
"$BIN" dev-tokens --count 10000 >"$OUT/buyers-wxshop.txt"
echo 'bench-admin-password' | "$BIN" admin create --username bench --role operator >/dev/null

echo "== run 1: gin peer and nginx hello (interleaved)"
bash "$SHARED/bench/hello/hello.sh" start
SERVER_CPU=0 ADDR=127.0.0.1:8080 REDIS_DB=0 bash "$SHARED/peers/gin-seed/start.sh"
GIN_PID=$(cat /tmp/gin-seed/run/gin-seed.pid)
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
echo "gin_idle_rss_kib $(rss "$GIN_PID")" >"$OUT/rss.txt"
DATA=$OUT/pairs-gin.txt OUTDIR=$OUT/gin python3 "$SHARED/bench/bench.py" gin=http://127.0.0.1:8080 hello=http://127.0.0.1:8090 \
  | tee "$OUT/gin.txt"
echo "gin_peak_rss_kib $(hwm "$GIN_PID")" >>"$OUT/rss.txt"
bash "$SHARED/peers/gin-seed/stop.sh"
bash "$SHARED/bench/hello/hello.sh" stop

echo "== run 2: wxshop"
taskset -c 0 "$BIN" serve &
WX_PID=$!
PIDS+=("$WX_PID")
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$WX_PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1
echo "wxshop_idle_rss_kib $(rss "$WX_PID")" >>"$OUT/rss.txt"
DATA=$OUT/pairs-wxshop.txt OUTDIR=$OUT/wxshop python3 "$SHARED/bench/bench.py" wxshop=http://127.0.0.1:$WX_PORT \
  | tee "$OUT/wxshop.txt"
echo "wxshop_peak_rss_kib $(hwm "$WX_PID")" >>"$OUT/rss.txt"

echo "== profile: GET /api/v1/orders/{id} at c64 for 10 s (flame graph of where wxshop spends its CPU)"
taskset -c 1 wrk -t1 -c64 -d14s -s "$SHARED/bench/wrk/orders.lua" "http://127.0.0.1:$WX_PORT" -- "$OUT/pairs-wxshop.txt" id 1 \
  >"$OUT/profile-load.txt" &
LOAD=$!
sleep 2
curl -s "http://127.0.0.1:$WX_OPS/debug/pprof/profile?seconds=10&format=svg" >"$OUT/profile-order-id.svg"
wait "$LOAD"

echo "== run 3: wxshop flash-sale purchase attempts (a sale of 100 units sells out; then the sold-out phase)"
ADM=$(curl -s -XPOST "http://127.0.0.1:$WX_PORT/admin/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"username":"bench","password":"bench-admin-password"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
curl -fsS -XPOST "http://127.0.0.1:$WX_PORT/admin/api/v1/skus/1/stock" -H "authorization: Bearer $ADM" \
  -H 'content-type: application/json' -d '{"delta":100000,"reason":"bench: flash-sale stock"}' >/dev/null
for conns in ${CONNS:-64 400}; do
  SALE=$(curl -s -XPOST "http://127.0.0.1:$WX_PORT/admin/api/v1/flash-sales" -H "authorization: Bearer $ADM" \
    -H 'content-type: application/json' \
    -d "{\"sku_id\":1,\"price_fen\":990,\"stock\":100,\"per_user_limit\":1,\"starts_at\":\"$(date -u +%FT%TZ)\",\"ends_at\":\"$(date -u -d '+1 hour' +%FT%TZ)\"}" \
    | sed 's/{"id":\([0-9]*\).*/\1/')
  [[ "$SALE" =~ ^[0-9]+$ ]] || { echo "creating the flash sale failed: $SALE" >&2; exit 1; }
  before=$(curl -s "http://127.0.0.1:$WX_OPS/metrics" | grep '^flash_sale_attempts_total' || true)
  WXSHOP_BENCH_TOKENS=$OUT/buyers-wxshop.txt WXSHOP_BENCH_SALE=$SALE taskset -c 1 \
    wrk -t1 "-c$conns" "-d${DURATION:-15}s" --latency --timeout 5s -s bench/flash_purchase.lua "http://127.0.0.1:$WX_PORT" \
    >"$OUT/flash-c$conns.txt"
  after=$(curl -s "http://127.0.0.1:$WX_OPS/metrics" | grep '^flash_sale_attempts_total' || true)
  { echo "BEFORE"; echo "$before"; echo "AFTER"; echo "$after"; } >"$OUT/flash-c$conns.metrics"
done
echo "wxshop_peak_rss_kib_after_flash $(hwm "$WX_PID")" >>"$OUT/rss.txt"

python3 bench/report.py "$OUT" | tee "$OUT/table.md"
