# A throwaway PostgreSQL for scripts/test and scripts/bench-protocol: start_throwaway_postgres installs Debian's
# postgresql package when it is missing, runs initdb into a temporary directory, serves on a free port on
# 127.0.0.1, exports DATABASE_URL and removes everything at exit. Sourced, not run; expects a log function.

postgres_bin() {
  ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 | xargs -r dirname
}

start_throwaway_postgres() {
  local bin sudo=()
  bin=$(postgres_bin || true)
  if [ -z "$bin" ]; then
    log "installing PostgreSQL from Debian's packages"
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bin=$(postgres_bin)
    [ -n "$bin" ] || { log "PostgreSQL installed but no initdb found"; exit 1; }
  fi

  PG_DIR=$(mktemp -d /tmp/fulcrum-pg.XXXXXX)
  local as_owner=()
  if [ "$(id -u)" -eq 0 ]; then
    # PostgreSQL refuses to run as root: the cluster belongs to the postgres user the package created.
    chown postgres:postgres "$PG_DIR"
    as_owner=(runuser -u postgres --)
  fi
  PG_CTL=("${as_owner[@]}" "$bin/pg_ctl")

  "${as_owner[@]}" "$bin/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-sync >/dev/null
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000)))
  trap stop_throwaway_postgres EXIT
  "${PG_CTL[@]}" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400" start >/dev/null
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  log "throwaway PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
}

stop_throwaway_postgres() {
  "${PG_CTL[@]}" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}

