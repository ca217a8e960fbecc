#!/usr/bin/env bash
# Start a throwaway PostgreSQL for the engine tests and print its URL on stdout.
#
# Installs PostgreSQL from Debian's packages when missing, runs a cluster of its own
# ("memdiag", listening on 127.0.0.1 only) and creates a user and a database. Idempotent and
# fast once installed. When apt, root or the server is unavailable it prints nothing: under
# CI=true it then exits 1 (CI must run the PostgreSQL tests); elsewhere it exits 0 and the
# PostgreSQL tests are skipped.
#
# When it starts the server and MEMDIAG_PG_STARTED names a file, the server's process id is
# written there, so the caller stops what it started (kill -INT, a fast shutdown) and nothing
# else: a server that was already running is left running.
#
# Usage: export MEMDIAG_TEST_PG_URL="$(.ci/postgres.sh)"
set -uo pipefail

CLUSTER=memdiag
PORT="${MEMDIAG_PG_PORT:-5433}"
NAME=memdiag
PASSWORD=memdiag

log() { echo "postgres.sh: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi
}

install_server() {
    ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && return 0
    log "installing postgresql from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    # Time limits: an unreachable mirror must cost CI a minute at most, never a hang.
    as_root timeout 120 apt-get update -qq >&2 || return 1
    as_root timeout 300 apt-get install -y -qq postgresql >&2 || return 1
}

start_cluster() {
    local version
    version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version $CLUSTER"; then
        as_root pg_createcluster "$version" "$CLUSTER" -p "$PORT" >&2 || return 1
    fi
    # A conf.d file, not pg_conftool: it writes the address unquoted, which the server rejects.
    echo "listen_addresses = '127.0.0.1'" \
        | as_root tee "/etc/postgresql/$version/$CLUSTER/conf.d/memdiag.conf" >/dev/null || return 1
    if ! pg_lsclusters -h | awk -v v="$version" -v c="$CLUSTER" '$1==v && $2==c {print $4}' \
        | grep -qx online; then
        as_root pg_ctlcluster "$version" "$CLUSTER" start >&2 || return 1
        if [ -n "${MEMDIAG_PG_STARTED:-}" ]; then
            local data
            data="$(pg_lsclusters -h | awk -v v="$version" -v c="$CLUSTER" '$1==v && $2==c {print $6}')"
            as_root head -n 1 "$data/postmaster.pid" >"$MEMDIAG_PG_STARTED" || return 1
        fi
    fi
}

create_database() {
    local psql=(as_root runuser -u postgres -- psql -p "$PORT" -h /var/run/postgresql -qtAX)
    if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$NAME'")" != 1 ]; then
        "${psql[@]}" -c "CREATE ROLE $NAME LOGIN PASSWORD '$PASSWORD'" >&2 || return 1
    fi
    if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$NAME'")" != 1 ]; then
        "${psql[@]}" -c "CREATE DATABASE $NAME OWNER $NAME" >&2 || return 1
    fi
}

wait_ready() {
    local tries
    for tries in $(seq 1 50); do
        pg_isready -q -h 127.0.0.1 -p "$PORT" && return 0
        sleep 0.2
    done
    return 1
}

# Under CI=true a PostgreSQL that cannot be had fails the build; elsewhere the tests skip.
unavailable() {
    log "$*"
    if [ "${CI:-}" = true ]; then
        log "CI=true: failing, the PostgreSQL tests must run in CI"
        exit 1
    fi
    exit 0
}

main() {
    install_server || unavailable "PostgreSQL not available (apt unreachable?)"
    start_cluster || unavailable "could not start the cluster"
    wait_ready || unavailable "the server does not answer on 127.0.0.1:$PORT"
    create_database || unavailable "could not create the database"
    echo "postgresql://$NAME:$PASSWORD@127.0.0.1:$PORT/$NAME"
}

main
exit 0
