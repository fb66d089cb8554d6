#!/usr/bin/env bash
# Upload-complete latency for ~2 MB JPEGs (release build), in both storage modes:
#   - embedded: SQLite and the bucket under the data dir, served by the binary at /files;
#   - S3: MariaDB and an s3s-fs server (its own process, port and directory).
# Uses the wxshop_test MariaDB account and the s3s-fs binary scripts/services.sh provides.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh >/dev/null
cargo build --release --locked --bin wxshop --example upload_bench
N="${UPLOAD_BENCH_N:-30}"
DB=wxshop_test_bench_uploads
SERVER=mysql://wxshop_test:wxshop_test@127.0.0.1:3306
S3S="${WXSHOP_TEST_S3S_FS:-$HOME/.cache/wxshop/s3s-fs-0.14.1/bin/s3s-fs}"
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
    WXSHOP_DATA_DIR="$WORK/$name" WXSHOP_LOG__FILTER=error WXSHOP_STORAGE__PER_USER_PER_MINUTE=0 "$@" \
    target/release/wxshop serve >"$WORK/$name/server.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "the $name server did not become ready" >&2; exit 1
}
echo "machine: $(nproc) cores; commit $(git rev-parse --short HEAD); $(date -u +%FT%TZ)"
P1=$(free_port)
start embedded "$P1"
echo "== embedded (SQLite, bucket under the data dir)"
target/release/examples/upload_bench "http://127.0.0.1:$P1" "$N"
S3_PORT=$(free_port)
mkdir -p "$WORK/s3/wxshop-media"
"$S3S" --host 127.0.0.1 --port "$S3_PORT" --access-key BENCHAK --secret-key bench-secret-key "$WORK/s3" >/dev/null 2>&1 &
PIDS+=($!)
P2=$(free_port)
start s3 "$P2" WXSHOP_DATABASE_URL="$SERVER/$DB" WXSHOP_STORAGE__PROVIDER=s3 \
  WXSHOP_STORAGE__ENDPOINT="http://127.0.0.1:$S3_PORT" WXSHOP_STORAGE__BUCKET=wxshop-media \
  WXSHOP_STORAGE__ACCESS_KEY_ID=BENCHAK WXSHOP_STORAGE__SECRET_ACCESS_KEY=bench-secret-key
echo "== S3 (MariaDB, s3s-fs; files sent by presigned PUT: s3s-fs 0.14.1's form parser fails on ~2 MB files)"
target/release/examples/upload_bench "http://127.0.0.1:$P2" "$N" PUT
