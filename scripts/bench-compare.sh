#!/usr/bin/env bash
# Runs the same load against Cloister and Synapse and prints the figures
# side by side (docs/performance.md, "Against Synapse"). Each scenario gets
# a freshly started server with a fresh database, on 127.0.0.1 only:
#
#   closed  — every user keeps BENCH_IN_FLIGHT sends outstanding (the most
#             each server accepts, and its latency at that load)
#   rate    — BENCH_RATE msg/s offered in total (latency at a fixed load)
#   memory  — BENCH_MEMORY_ROUNDS rounds of BENCH_MEMORY_BURST concurrent
#             registrations then logins, server RSS after each
#
#   scripts/bench-compare.sh                                   # 100 users / 10 rooms, 30 s each
#   BENCH_USERS=20 BENCH_DURATION=10 scripts/bench-compare.sh  # a short run
#   BENCH_SCENARIOS="rate" BENCH_SERVERS="cloister-sqlite" scripts/bench-compare.sh
#   CLOISTER_BIN=path/to/cloister scripts/bench-compare.sh     # a prebuilt server instead of a release build
#   CLOISTER_BENCH_POSTGRES_URL=postgres://… scripts/bench-compare.sh   # also Cloister on PostgreSQL
#   SYNAPSE_BENCH_POSTGRES_URL=postgres://… scripts/bench-compare.sh    # also Synapse on PostgreSQL
#
# Settings (environment): BENCH_USERS (100), BENCH_ROOMS (10),
# BENCH_DURATION (30), BENCH_WARMUP (5), BENCH_IN_FLIGHT (2), BENCH_RATE
# (100), BENCH_MEMORY_ROUNDS (5), BENCH_MEMORY_BURST (20), BENCH_SCENARIOS
# ("closed rate memory"), BENCH_SERVERS ("cloister-sqlite synapse", plus
# cloister-postgres when CLOISTER_BENCH_POSTGRES_URL is set and
# synapse-postgres when SYNAPSE_BENCH_POSTGRES_URL is set), BENCH_OUT
# (reports, logs and summary.md; default target/bench-compare/run-DATE),
# SYNAPSE_SPEC (the pip requirement, default matrix-synapse==1.163.2),
# SYNAPSE_VENV (default target/bench-compare/synapse-venv).
#
# Needs cargo, python3 with venv and pip (Synapse is installed from PyPI
# into SYNAPSE_VENV on first use). The PostgreSQL database is used as it
# is: each run's users have their own names, and earlier runs' rows stay.
# Synapse's PostgreSQL database is dropped and created again for each run
# (the URL names it; its server must let that role create databases), with
# the C collation Synapse insists on; psycopg2-binary goes into the venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

USERS="${BENCH_USERS:-100}"
ROOMS="${BENCH_ROOMS:-10}"
DURATION="${BENCH_DURATION:-30}"
WARMUP="${BENCH_WARMUP:-5}"
IN_FLIGHT="${BENCH_IN_FLIGHT:-2}"
RATE="${BENCH_RATE:-100}"
MEMORY_ROUNDS="${BENCH_MEMORY_ROUNDS:-5}"
MEMORY_BURST="${BENCH_MEMORY_BURST:-20}"
SCENARIOS="${BENCH_SCENARIOS:-closed rate memory}"
DEFAULT_SERVERS="cloister-sqlite"
if [[ -n "${CLOISTER_BENCH_POSTGRES_URL:-}" ]]; then
    DEFAULT_SERVERS+=" cloister-postgres"
fi
DEFAULT_SERVERS+=" synapse"
if [[ -n "${SYNAPSE_BENCH_POSTGRES_URL:-}" ]]; then
    DEFAULT_SERVERS+=" synapse-postgres"
fi
SERVERS="${BENCH_SERVERS:-$DEFAULT_SERVERS}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${BENCH_OUT:-$TARGET/bench-compare/run-$STAMP}"
SYNAPSE_SPEC="${SYNAPSE_SPEC:-matrix-synapse==1.163.2}"
SYNAPSE_VENV="${SYNAPSE_VENV:-$TARGET/bench-compare/synapse-venv}"
mkdir -p "$OUT"

SERVER_PID=""
SERVER_URL=""

stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits up to $2 seconds for $SERVER_URL/health; $1 names the log to show
# if the server dies or never answers.
wait_healthy() {
    local log="$1" limit="$2"
    for _ in $(seq 1 $((limit * 5))); do
        if curl -fsS -o /dev/null "$SERVER_URL/health" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "bench-compare: the server exited before it became healthy; its log:" >&2
            tail -n 40 "$log" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "bench-compare: no answer from $SERVER_URL/health within $limit s; the log:" >&2
    tail -n 40 "$log" >&2
    exit 1
}

start_cloister() { # $1: data directory, $2: database URL or empty
    local dir="$1" db="$2" port
    port="$(free_port)"
    SERVER_URL="http://127.0.0.1:$port"
    mkdir -p "$dir"
    env CLOISTER_LISTEN="127.0.0.1:$port" \
        CLOISTER_DATA_DIR="$dir/data" \
        CLOISTER_REGISTRATION=open \
        CLOISTER_RATE_LIMIT__ENABLED=false \
        ${db:+CLOISTER_DATABASE_URL="$db"} \
        NO_COLOR=1 \
        "$CLOISTER" serve >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    wait_healthy "$dir/server.log" 60
}

install_synapse() {
    if [[ -x "$SYNAPSE_VENV/bin/python" ]] && "$SYNAPSE_VENV/bin/python" -c 'import synapse' 2>/dev/null; then
        return 0
    fi
    echo "bench-compare: installing $SYNAPSE_SPEC into $SYNAPSE_VENV" >&2
    python3 -m venv "$SYNAPSE_VENV"
    "$SYNAPSE_VENV/bin/pip" install -q --upgrade pip
    "$SYNAPSE_VENV/bin/pip" install -q "$SYNAPSE_SPEC"
}

# Synapse on PostgreSQL needs psycopg2 (the binary wheel: no compiler or
# libpq headers) and a fresh database with the C collation.
prepare_synapse_postgres() {
    "$SYNAPSE_VENV/bin/python" -c 'import psycopg2' 2>/dev/null \
        || "$SYNAPSE_VENV/bin/pip" install -q psycopg2-binary
    local name="${SYNAPSE_BENCH_POSTGRES_URL##*/}"
    name="${name%%\?*}"
    local admin="${SYNAPSE_BENCH_POSTGRES_URL%/*}/postgres"
    psql -q "$admin" -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS \"$name\"" \
        -c "CREATE DATABASE \"$name\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
}

start_synapse() { # $1: data directory, $2: PostgreSQL URL or empty (SQLite)
    local dir="$1" db="$2" port
    port="$(free_port)"
    SERVER_URL="http://127.0.0.1:$port"
    mkdir -p "$dir"
    "$SYNAPSE_VENV/bin/python" -m synapse.app.homeserver --server-name localhost \
        --config-path "$dir/homeserver.yaml" --data-directory "$dir" \
        --generate-config --report-stats=no >"$dir/generate.log" 2>&1
    # Loopback only, SQLite, open registration, no federation key servers,
    # and every rate limit out of the way (the generator measures the
    # server, not its throttling). Presence is off: Cloister has none, and
    # clients here filter it out anyway.
    if [[ -n "$db" ]]; then
        prepare_synapse_postgres
    fi
    "$SYNAPSE_VENV/bin/python" - "$dir/homeserver.yaml" "$port" "$dir" "$db" <<'PY'
import sys, yaml
from urllib.parse import urlparse
path, port, data, db = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(path) as f:
    c = yaml.safe_load(f)
c["listeners"] = [{
    "port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
    "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}],
}]
if db:
    u = urlparse(db)
    c["database"] = {"name": "psycopg2", "args": {
        "user": u.username or "postgres", "password": u.password or "",
        "dbname": u.path.lstrip("/"), "host": u.hostname or "127.0.0.1",
        "port": u.port or 5432, "cp_min": 5, "cp_max": 10,
    }}
else:
    c["database"] = {"name": "sqlite3", "args": {"database": f"{data}/homeserver.db"}}
c["enable_registration"] = True
c["enable_registration_without_verification"] = True
c["trusted_key_servers"] = []
c["suppress_key_server_warning"] = True
c["report_stats"] = False
c["presence"] = {"enabled": False}
big = {"per_second": 100000, "burst_count": 100000}
for key in ["rc_message", "rc_registration", "rc_registration_token_validity",
            "rc_admin_redaction", "rc_joins_per_room", "rc_key_requests",
            "rc_3pid_validation", "rc_third_party_invite", "rc_media_create",
            "rc_delayed_event_mgmt", "rc_room_creation", "rc_reports",
            "rc_user_directory", "rc_profile"]:
    c[key] = dict(big)
c["rc_login"] = {"address": dict(big), "account": dict(big), "failed_attempts": dict(big)}
c["rc_joins"] = {"local": dict(big), "remote": dict(big)}
c["rc_invites"] = {"per_room": dict(big), "per_user": dict(big), "per_issuer": dict(big)}
c["rc_presence"] = {"per_user": dict(big)}
with open(path, "w") as f:
    yaml.safe_dump(c, f)
# The generated logging config writes homeserver.log to the working
# directory; keep it with the rest of this run.
with open(c["log_config"]) as f:
    log = yaml.safe_load(f)
for handler in log.get("handlers", {}).values():
    if "filename" in handler:
        handler["filename"] = f"{data}/homeserver.log"
with open(c["log_config"], "w") as f:
    yaml.safe_dump(log, f)
PY
    "$SYNAPSE_VENV/bin/python" -m synapse.app.homeserver --config-path "$dir/homeserver.yaml" \
        >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    wait_healthy "$dir/server.log" 180
}

start_server() { # $1: server kind, $2: data directory
    case "$1" in
        cloister-sqlite) start_cloister "$2" "" ;;
        cloister-postgres) start_cloister "$2" "$CLOISTER_BENCH_POSTGRES_URL" ;;
        synapse) start_synapse "$2" "" ;;
        synapse-postgres) start_synapse "$2" "$SYNAPSE_BENCH_POSTGRES_URL" ;;
        *) echo "bench-compare: unknown server $1" >&2; exit 2 ;;
    esac
}

synapse_version() {
    "$SYNAPSE_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("matrix-synapse"))'
}

label_of() {
    case "$1" in
        cloister-sqlite) echo "Cloister (SQLite)" ;;
        cloister-postgres) echo "Cloister (PostgreSQL)" ;;
        synapse) echo "Synapse $(synapse_version) (SQLite)" ;;
        synapse-postgres) echo "Synapse $(synapse_version) (PostgreSQL)" ;;
    esac
}

scenario_args() {
    case "$1" in
        closed) echo "--mode closed --in-flight $IN_FLIGHT --users $USERS --rooms $ROOMS --duration $DURATION --warmup $WARMUP" ;;
        rate) echo "--mode rate --rate $RATE --users $USERS --rooms $ROOMS --duration $DURATION --warmup $WARMUP" ;;
        memory) echo "--scenario memory --memory-rounds $MEMORY_ROUNDS --memory-burst $MEMORY_BURST" ;;
        *) echo "bench-compare: unknown scenario $1" >&2; exit 2 ;;
    esac
}

echo "bench-compare: building the load generator (release)" >&2
cargo build --release -p cloister-bench --bin cloister-bench
BENCH="$TARGET/release/cloister-bench"
if [[ -n "${CLOISTER_BIN:-}" ]]; then
    CLOISTER="$CLOISTER_BIN"
elif [[ " $SERVERS " == *" cloister-"* ]]; then
    echo "bench-compare: building Cloister (release)" >&2
    cargo build --release --bin cloister
    CLOISTER="$TARGET/release/cloister"
fi
if [[ " $SERVERS " == *" synapse"* ]]; then
    install_synapse
fi

{
    echo "# bench-compare $STAMP"
    echo
    echo "\`BENCH_USERS=$USERS BENCH_ROOMS=$ROOMS BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_IN_FLIGHT=$IN_FLIGHT BENCH_RATE=$RATE BENCH_MEMORY_ROUNDS=$MEMORY_ROUNDS BENCH_MEMORY_BURST=$MEMORY_BURST scripts/bench-compare.sh\`"
    echo "on $(nproc) cores, $(uname -sr); git $(git rev-parse --short HEAD 2>/dev/null || echo '?'); Cloister binary ${CLOISTER:-(not run)}"
    echo "load average at the start (other work on the machine skews the figures): $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/summary.md"

for scenario in $SCENARIOS; do
    compare=()
    for server in $SERVERS; do
        dir="$OUT/$server-$scenario"
        label="$(label_of "$server")"
        echo "bench-compare: $scenario against $label" >&2
        start_server "$server" "$dir"
        # shellcheck disable=SC2046 # the scenario's options are words
        "$BENCH" --url "$SERVER_URL" --server-pid "$SERVER_PID" --label "$label" \
            --user-prefix "b${STAMP,,}${scenario:0:1}" $(scenario_args "$scenario") \
            --json >"$dir/report.json" 2>"$dir/bench.log" || {
            echo "bench-compare: the generator failed against $label; its log:" >&2
            tail -n 20 "$dir/bench.log" >&2
            exit 1
        }
        stop_server
        compare+=(--compare "$label=$dir/report.json")
    done
    {
        echo
        echo "## $scenario"
        echo
        "$BENCH" "${compare[@]}"
    } >>"$OUT/summary.md"
done

cat "$OUT/summary.md"
echo >&2
echo "bench-compare: reports and logs in $OUT" >&2
