#!/usr/bin/env bash
# Makes sure MariaDB and Redis run on loopback, installing them with apt-get when missing (as root).
# Idempotent: fine when they are already running. Prints nothing on success but progress lines.
# Creates a MariaDB account `wxshop_test` (password `wxshop_test`) allowed only on `wxshop\_test\_%` databases,
# because a freshly installed Debian MariaDB lets root in through the unix socket only.
set -euo pipefail

MARIADB_PORT="${MARIADB_PORT:-3306}"
REDIS_PORT="${REDIS_PORT:-6379}"

log() { echo "services: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root to run: $*"; return 1; fi
}

apt_updated=""
apt_install() {
    if [ -z "$apt_updated" ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

wait_for() { # wait_for SECONDS description command...
    local seconds="$1" what="$2"; shift 2
    for _ in $(seq 1 "$((seconds * 5))"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    log "$what did not come up within ${seconds}s"; return 1
}

# --- MariaDB ---------------------------------------------------------------------------------------------
# `mysqladmin ping` succeeds once the server answers, even when the account is refused: all we need here.
mariadb_up() { mysqladmin --protocol=tcp -h127.0.0.1 -P"$MARIADB_PORT" -uwxshop_test ping; }
test_account_works() { mysql --protocol=tcp -h127.0.0.1 -P"$MARIADB_PORT" -uwxshop_test -pwxshop_test -e 'SELECT 1'; }

if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
    log "installing MariaDB"
    apt_install mariadb-server mariadb-client
fi
if ! mariadb_up >/dev/null 2>&1; then
    log "starting MariaDB"
    as_root mkdir -p /run/mysqld
    as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
    if [ ! -d /var/lib/mysql/mysql ]; then
        as_root mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    wait_for 60 MariaDB mariadb_up
fi
# The test account: created through the root socket when it does not work yet.
if ! test_account_works >/dev/null 2>&1; then
    log "creating the MariaDB test account"
    as_root mysql --protocol=socket -uroot <<'SQL'
CREATE USER IF NOT EXISTS 'wxshop_test'@'127.0.0.1' IDENTIFIED BY 'wxshop_test';
CREATE USER IF NOT EXISTS 'wxshop_test'@'localhost' IDENTIFIED BY 'wxshop_test';
CREATE USER IF NOT EXISTS 'wxshop_test'@'::1' IDENTIFIED BY 'wxshop_test';
GRANT ALL PRIVILEGES ON `wxshop\_test\_%`.* TO 'wxshop_test'@'127.0.0.1';
GRANT ALL PRIVILEGES ON `wxshop\_test\_%`.* TO 'wxshop_test'@'localhost';
GRANT ALL PRIVILEGES ON `wxshop\_test\_%`.* TO 'wxshop_test'@'::1';
SQL
fi

# --- Redis -----------------------------------------------------------------------------------------------
redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping | grep -q PONG; }

if ! command -v redis-server >/dev/null; then
    log "installing Redis"
    apt_install redis-server redis-tools
fi
if ! redis_up >/dev/null 2>&1; then
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir /tmp
    wait_for 20 Redis redis_up
fi
