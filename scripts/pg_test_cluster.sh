#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1 for the state-store tests (Debian's `postgresql`).
#   eval "$(scripts/pg_test_cluster.sh start DIR)"   starts it; prints `export TWIN_TEST_POSTGRES_URL=...`
#   scripts/pg_test_cluster.sh stop DIR              stops it and removes DIR
# initdb refuses to run as root, so as root the cluster belongs to the `postgres` user.
# DIR must be reachable by that user (e.g. made by mktemp -d directly under /tmp).
# PG_SETTINGS: server settings (default "-c fsync=off": a test cluster needs no durability).
set -euo pipefail
cmd="${1:?usage: pg_test_cluster.sh start|stop DIR}"
dir="${2:?usage: pg_test_cluster.sh start|stop DIR}"
bin="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
if [[ -z "$bin" || ! -x "$bin/initdb" ]]; then
  echo "pg_test_cluster: no PostgreSQL server binaries (apt-get install -y postgresql)" >&2
  exit 1
fi
as_owner() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
settings="${PG_SETTINGS:--c fsync=off}"
case "$cmd" in
  start)
    mkdir -p "$dir"
    [[ $(id -u) == 0 ]] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$bin/initdb" -D "$dir/data" -U twin --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 $settings" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U twin twin_test
    echo "export TWIN_TEST_POSTGRES_URL=postgresql://twin@127.0.0.1:$port/twin_test"
    ;;
  stop)
    if [[ -d "$dir/data" ]]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "pg_test_cluster: unknown command $cmd (start|stop)" >&2
    exit 2
    ;;
esac
