#!/usr/bin/env bash
# Start a throwaway PostgreSQL on 127.0.0.1 for the store tests, installing Debian's `postgresql`
# package first if no server binaries exist. Idempotent: a server already answering on the port is
# reused. stdout is exactly one line, the connection URL (progress and errors go to stderr):
#   export TEST_DATABASE_URL="$(test/store/start-postgres.sh)"
# The role may CREATEDB: the test suite makes a fresh database per run and drops it afterwards.
# Knobs: PG_TEST_PORT (54329), PG_TEST_DIR (/tmp/retrieval-pg), PG_TEST_DB (retrieval_test).
set -euo pipefail

PORT="${PG_TEST_PORT:-54329}"
DIR="${PG_TEST_DIR:-/tmp/retrieval-pg}"
DB="${PG_TEST_DB:-retrieval_test}"
ROLE="retrieval"
PASS="retrieval"
URL="postgres://${ROLE}:${PASS}@127.0.0.1:${PORT}/${DB}"

die() { echo "start-postgres: $*" >&2; exit 1; }
log() { echo "start-postgres: $*" >&2; }

find_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x "$d/pg_ctl" && -x "$d/initdb" ]] && { echo "$d"; return 0; }
  done
  return 1
}

BIN="$(find_bindir || true)"
if [[ -z "$BIN" ]]; then
  [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
  command -v apt-get >/dev/null || die "PostgreSQL is not installed and apt-get is not available"
  log "installing postgresql (apt-get)…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends postgresql >&2 || die "apt-get install postgresql failed"
  BIN="$(find_bindir)" || die "postgresql installed but no pg_ctl/initdb under /usr/lib/postgresql/*/bin"
fi

# The server refuses to run as root; use the package's `postgres` account when we are root.
if [[ "$(id -u)" == 0 ]]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir "$DIR" --shell /bin/sh postgres
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; }

if ! ready; then
  mkdir -p "$DIR"
  [[ "$(id -u)" == 0 ]] && chown postgres: "$DIR"
  if [[ ! -f "$DIR/PG_VERSION" ]]; then
    log "initdb in $DIR"
    # trust on loopback only: a CI throwaway; the role still gets a password so the URL is realistic.
    as_pg "$BIN/initdb" -D "$DIR" -U postgres --auth-local=trust --auth-host=trust -E UTF8 --locale=C.UTF-8 >/dev/null \
      || die "initdb failed in $DIR"
  fi
  log "starting postgres on 127.0.0.1:$PORT"
  as_pg "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null \
    || { tail -n 20 "$DIR/server.log" >&2 2>/dev/null; die "pg_ctl start failed (log above)"; }
fi
ready || die "postgres on 127.0.0.1:$PORT is not accepting connections"

psql_admin() { as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
if [[ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]]; then
  psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASS'" >/dev/null || die "cannot create role $ROLE"
fi
if [[ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]]; then
  psql_admin -c "CREATE DATABASE $DB OWNER $ROLE" >/dev/null || die "cannot create database $DB"
fi
"$BIN/psql" "$URL" -qAt -c 'SELECT 1' >/dev/null || die "cannot connect as $URL"
echo "$URL"
