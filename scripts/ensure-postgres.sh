#!/usr/bin/env bash
# Makes a PostgreSQL server reachable for the test suite and prints the admin
# URL to use. Order: the URL already in CLOISTER_TEST_POSTGRES_URL (or the
# local server on 127.0.0.1:5432); else start the machine's cluster; else a
# throwaway cluster in a temporary directory on port 55432.
set -euo pipefail

url="${CLOISTER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

reachable() {
    pg_isready -q -d "$1" 2>/dev/null || psql "$1" -qAtc 'SELECT 1' >/dev/null 2>&1
}

if reachable "$url"; then
    echo "$url"
    exit 0
fi

if command -v pg_ctlcluster >/dev/null 2>&1 && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
    for version in /etc/postgresql/*; do
        pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start >&2 2>&1 || true
    done
    for _ in $(seq 1 30); do
        reachable "$url" && { echo "$url"; exit 0; }
        sleep 0.5
    done
fi

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] || { echo "ensure-postgres: no PostgreSQL installed (apt-get install postgresql)" >&2; exit 1; }
dir=$(mktemp -d /tmp/cloister-pg.XXXXXX)
run=()
if [ "$(id -u)" = 0 ]; then
    # initdb refuses to run as root; the cluster belongs to `postgres`.
    chown postgres "$dir"
    run=(runuser -u postgres --)
fi
"${run[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust >&2
"${run[@]}" "$bin/pg_ctl" -D "$dir/data" -o "-p 55432 -k $dir -c listen_addresses=127.0.0.1" -l "$dir/log" -w start >&2
echo "postgres://postgres@127.0.0.1:55432/postgres"
