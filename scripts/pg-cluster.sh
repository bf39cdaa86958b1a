#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks.
#
#   scripts/pg-cluster.sh start   DIR PORT   initdb (if needed) and start; prints the URL
#   scripts/pg-cluster.sh restart DIR PORT   fast restart (what the reconnect test does by hand)
#   scripts/pg-cluster.sh stop    DIR [PORT] stop and remove DIR
#   scripts/pg-cluster.sh url     DIR PORT   print the URL
#
# The server runs as user postgres (it refuses root), listens on 127.0.0.1:PORT only, and keeps its
# unix socket inside DIR. Extra server settings: PG_CLUSTER_OPTS="-c shared_buffers=512MB ...".
# PG_BIN overrides /usr/lib/postgresql/15/bin.
set -euo pipefail

die() { echo "pg-cluster: $*" >&2; exit 1; }

cmd=${1:-}; dir=${2:-}; port=${3:-}
[[ -n "$cmd" && -n "$dir" ]] || die "usage: $0 start|restart|stop|url DIR PORT"
[[ "$dir" == /* ]] || die "DIR must be an absolute path, got '$dir'"
[[ "$dir" =~ ^/[A-Za-z0-9._/-]+$ ]] || die "DIR may contain only letters, digits and ._/-"
[[ "$dir" != "/" ]] || die "refusing DIR=/"
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
[[ -x "$bin/pg_ctl" ]] || die "no PostgreSQL at $bin (apt-get install postgresql, or set PG_BIN)"
marker="$dir/.pg-cluster"
data="$dir/data"

need_port() {
  [[ "$port" =~ ^[0-9]+$ ]] && (( port > 0 && port < 65536 )) || die "PORT must be 1..65535, got '${port}'"
}

as_postgres() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  elif [[ $(id -un) == postgres ]]; then
    "$@"
  else
    die "run as root or as user postgres"
  fi
}

url() { echo "postgres://postgres@127.0.0.1:$port/postgres"; }

running() { [[ -f "$data/PG_VERSION" ]] && as_postgres "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

case "$cmd" in
  start)
    need_port
    if running; then url; exit 0; fi
    if [[ -e "$dir" && ! -f "$marker" ]] && [[ -n "$(ls -A "$dir")" ]]; then
      die "$dir exists, is not empty and was not made by this script"
    fi
    mkdir -p "$dir"
    touch "$marker"
    mkdir -p "$dir/sock"
    if [[ $(id -u) -eq 0 ]]; then chown -R postgres:postgres "$dir"; fi
    chmod 700 "$dir"
    if [[ ! -f "$data/PG_VERSION" ]]; then
      as_postgres "$bin/initdb" -D "$data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 --no-sync \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    fi
    as_postgres "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 30 \
      -o "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 ${PG_CLUSTER_OPTS:-}" start >/dev/null \
      || { tail -n 20 "$dir/postgres.log" >&2 || true; die "server did not start on port $port"; }
    url
    ;;
  restart)
    need_port
    running || die "no server running in $dir"
    as_postgres "$bin/pg_ctl" -D "$data" -m fast -w -t 30 restart >/dev/null
    url
    ;;
  stop)
    if [[ ! -e "$dir" ]]; then exit 0; fi
    [[ -f "$marker" ]] || die "$dir was not made by this script; not removing it"
    if running; then as_postgres "$bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null; fi
    rm -rf "$dir"
    ;;
  url)
    need_port; url
    ;;
  *) die "unknown command '$cmd' (start|restart|stop|url)" ;;
esac
