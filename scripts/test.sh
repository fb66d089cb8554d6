#!/usr/bin/env bash
# Runs the whole test suite once: the alert rules (promtool), then the embedded backends (SQLite, in-process) and
# MariaDB + Redis + a Kafka-protocol broker (the binary built with the `kafka` feature), then the OpenAPI-driven
# fuzz stage (scripts/fuzz.sh, Schemathesis) on both backends. Installs and starts MariaDB, Redis and the broker
# when missing (scripts/services.sh). Extra arguments go to `cargo test`.
# Point WXSHOP_TEST_DATABASE_URL / WXSHOP_TEST_REDIS_URL elsewhere to use other servers.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${WXSHOP_TEST_DATABASE_URL:-}" ] || [ -z "${WXSHOP_TEST_REDIS_URL:-}" ] || [ -z "${WXSHOP_TEST_KAFKA_BROKERS:-}" ]; then
    bash scripts/services.sh
fi
export WXSHOP_TEST_KAFKA_BROKERS="${WXSHOP_TEST_KAFKA_BROKERS:-127.0.0.1:19092}"
export WXSHOP_TEST_DATABASE_URL="${WXSHOP_TEST_DATABASE_URL:-mysql://wxshop_test:wxshop_test@127.0.0.1:3306/}"
export WXSHOP_TEST_REDIS_URL="${WXSHOP_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
echo "test.sh: MariaDB at ${WXSHOP_TEST_DATABASE_URL%%@*}@…, Redis at $WXSHOP_TEST_REDIS_URL" >&2

status=0
bash scripts/check-deploy.sh || status=$?
cargo test --locked --features kafka "$@" || status=$?
# The fuzz stage runs the binary `cargo test` just built; skipped when the tests were filtered (extra arguments).
if [ "$#" -eq 0 ]; then
    bash scripts/fuzz.sh || status=$?
    # The default build (no `kafka` feature) refuses a Kafka configuration with a message naming the key and the
    # build command. Checked here, after the stages that use the Kafka-enabled binary: the suite itself runs with the
    # feature. Only the wxshop crate is rebuilt.
    cargo build --locked --bin wxshop
    code=0
    out="$(env -i PATH="$PATH" WXSHOP_DATA_DIR="$(mktemp -d)" WXSHOP_EVENTS__KAFKA_BROKERS=127.0.0.1:9 \
        target/debug/wxshop serve 2>&1)" || code=$?
    if [ "$code" -eq 2 ] && grep -q 'events.kafka_brokers' <<<"$out" && grep -q -- '--features kafka' <<<"$out"; then
        echo "test.sh: a binary without the kafka feature refuses a Kafka configuration: ok" >&2
    else
        echo "test.sh: FAILED: a binary without the kafka feature must refuse a Kafka configuration (exit $code): $out" >&2
        status=1
    fi
fi

# Tests drop their own databases and keys as they end; a test binary that exits first can leave a few behind.
if [ "$WXSHOP_TEST_DATABASE_URL" = "mysql://wxshop_test:wxshop_test@127.0.0.1:3306/" ]; then
    mysql --protocol=tcp -h127.0.0.1 -uwxshop_test -pwxshop_test -N \
        -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'wxshop\\_test\\_%'" 2>/dev/null |
        while read -r db; do
            mysql --protocol=tcp -h127.0.0.1 -uwxshop_test -pwxshop_test -e "DROP DATABASE IF EXISTS \`$db\`" 2>/dev/null || true
        done
fi
redis-cli -u "$WXSHOP_TEST_REDIS_URL" --scan --pattern 'wxshop-test:*' 2>/dev/null | xargs -r redis-cli -u "$WXSHOP_TEST_REDIS_URL" del >/dev/null 2>&1 || true
exit "$status"
