#!/usr/bin/env bash
# OpenAPI-driven property-based fuzzing of the real server with Schemathesis, on the embedded backend and on
# MariaDB + Redis. Fails on any 5xx, any status the document does not list, any response that breaks its
# schema or content type, and any schema-valid request the server rejects.
#
#   bash scripts/fuzz.sh                 # both backends (scale-out when WXSHOP_TEST_DATABASE_URL is set)
#   FUZZ_EXAMPLES=200 FUZZ_SEED=7 bash scripts/fuzz.sh   # a longer run, another seed
#
# Schemathesis comes from PyPI into a virtualenv under ~/.cache/wxshop (installed once, reused). The server is
# target/debug/wxshop (built by `cargo test`; built here when missing). Each backend gets a fresh database.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES="${FUZZ_EXAMPLES:-40}"
SEED="${FUZZ_SEED:-20261130}"
# Each Schemathesis run is cut off (and fails) after this many seconds: the stage stays bounded whatever happens.
RUN_LIMIT="${FUZZ_RUN_LIMIT:-600}"
TOOLS="${FUZZ_TOOLS_DIR:-$HOME/.cache/wxshop}"
VENV="$TOOLS/schemathesis-$SCHEMATHESIS_VERSION"
log() { echo "fuzz: $*" >&2; }

if [ ! -f "$VENV/.installed" ]; then
    log "installing Schemathesis $SCHEMATHESIS_VERSION into $VENV"
    rm -rf "$VENV"
    mkdir -p "$TOOLS"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        log "installing python3-venv"
        rm -rf "$VENV"
        apt-get install -y -qq python3-venv >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
    touch "$VENV/.installed"
fi
ST="$VENV/bin/schemathesis"

BIN=target/debug/wxshop
[ -x "$BIN" ] || cargo build --locked
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

# fuzz_backend NAME [ENV=VALUE ...]: starts the server with the extra environment, signs in a user and an admin,
# and runs Schemathesis over the mini-program API (user token) and the back office (admin token).
fuzz_backend() {
    local name="$1"; shift
    local port ops data
    port="$(free_port)"; ops="$(free_port)"; data="$WORK/$name"
    mkdir -p "$data"
    # A clean environment: every WXSHOP_* variable is configuration to the server (the test runner's are not).
    local env=(-i PATH="$PATH" HOME="$HOME" WXSHOP_LISTEN="127.0.0.1:$port" WXSHOP_OPS_LISTEN="127.0.0.1:$ops" WXSHOP_DATA_DIR="$data"
        WXSHOP_LOG__FILTER=warn WXSHOP_DB__SEED_DEMO=true "$@")
    env "${env[@]}" "$BIN" serve >"$data/server.log" 2>&1 &
    SERVER_PID=$!
    local base="http://127.0.0.1:$port"
    for _ in $(seq 1 150); do
        curl -fs "$base/readyz" >/dev/null 2>&1 && break
        sleep 0.2
    done
    curl -fs "$base/readyz" >/dev/null || { log "$name: server did not become ready"; cat "$data/server.log" >&2; return 1; }

    local user admin
    user="$(curl -fs -XPOST "$base/api/v1/auth/wechat/login" -H 'content-type: application/json' -d '{"code":"fuzz-user"}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
    curl -fs -XPOST "$base/api/v1/addresses" -H "authorization: Bearer $user" -H 'content-type: application/json' \
        -d '{"recipient":"测试","phone":"13800001111","province":"浙江省","city":"杭州市","detail":"1 号"}' >/dev/null
    echo 'a-long-fuzzing-password' | env "${env[@]}" "$BIN" admin create --username fuzz-admin --role admin >/dev/null
    admin="$(curl -fs -XPOST "$base/admin/api/v1/auth/login" -H 'content-type: application/json' \
        -d '{"username":"fuzz-admin","password":"a-long-fuzzing-password"}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"

    # The checks, and the few operations exempt from one of them, are in schemathesis.toml.
    local common=(--phases examples,coverage,fuzzing -n "$EXAMPLES" --seed "$SEED" --workers 1 --request-timeout 20
        --suppress-health-check all --warnings off)
    local status=0
    log "$name: mini-program API and ops routes (user token)"
    timeout "$RUN_LIMIT" "$ST" --config-file schemathesis.toml run "$base/openapi.json" "${common[@]}" -H "Authorization: Bearer $user" \
        --exclude-path-regex '^/admin/' --exclude-path '/api/v1/auth/logout' || status=1
    log "$name: back office (admin token)"
    timeout "$RUN_LIMIT" "$ST" --config-file schemathesis.toml run "$base/openapi.json" "${common[@]}" -H "Authorization: Bearer $admin" \
        --include-path-regex '^/admin/' --exclude-path '/admin/api/v1/auth/logout' || status=1
    log "$name: logging out (last: it revokes the tokens)"
    timeout "$RUN_LIMIT" "$ST" --config-file schemathesis.toml run "$base/openapi.json" "${common[@]}" -H "Authorization: Bearer $user" \
        --include-path-regex '/auth/logout$' || status=1
    if grep -q '"level":"ERROR"\|ERROR' "$data/server.log"; then
        log "$name: the server logged errors:"; grep 'ERROR' "$data/server.log" | head -20 >&2
    fi
    kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    return "$status"
}

status=0
started=$SECONDS
fuzz_backend embedded || status=1
if [ -n "${WXSHOP_TEST_DATABASE_URL:-}" ]; then
    database="wxshop_test_fuzz_$$"
    url="${WXSHOP_TEST_DATABASE_URL%/}/$database"
    server="${WXSHOP_TEST_DATABASE_URL#mysql://}"; creds="${server%%@*}"; hostport="${server#*@}"; hostport="${hostport%%/*}"
    sql=(mysql --protocol=tcp -h"${hostport%%:*}" -P"${hostport##*:}" -u"${creds%%:*}")
    case "$creds" in *:*) sql+=(-p"${creds#*:}") ;; esac
    "${sql[@]}" -e "CREATE DATABASE \`$database\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    fuzz_backend scale-out WXSHOP_DATABASE_URL="$url" WXSHOP_REDIS_URL="${WXSHOP_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}" \
        WXSHOP_REDIS_PREFIX="wxshop-test:fuzz-$$:" || status=1
    "${sql[@]}" -e "DROP DATABASE IF EXISTS \`$database\`" || true
fi
log "done in $((SECONDS - started)) s (seed $SEED, $EXAMPLES examples per operation and phase)"
exit "$status"
