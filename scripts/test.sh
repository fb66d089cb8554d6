#!/usr/bin/env bash
# Runs the whole test suite once: the embedded backends (SQLite, in-process) and MariaDB + Redis.
# Installs and starts MariaDB and Redis when missing (scripts/services.sh). Extra arguments go to `cargo test`.
# Point WXSHOP_TEST_DATABASE_URL / WXSHOP_TEST_REDIS_URL elsewhere to use other servers.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${WXSHOP_TEST_DATABASE_URL:-}" ] || [ -z "${WXSHOP_TEST_REDIS_URL:-}" ]; then
    bash scripts/services.sh
fi
export WXSHOP_TEST_DATABASE_URL="${WXSHOP_TEST_DATABASE_URL:-mysql://wxshop_test:wxshop_test@127.0.0.1:3306/}"
export WXSHOP_TEST_REDIS_URL="${WXSHOP_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
echo "test.sh: MariaDB at ${WXSHOP_TEST_DATABASE_URL%%@*}@…, Redis at $WXSHOP_TEST_REDIS_URL" >&2

cargo test --locked "$@"
