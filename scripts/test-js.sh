#!/usr/bin/env bash
# Interop test with a real client: builds Cloister (and cloister-cli), starts
# it on a free port with a throwaway data directory (SQLite), and runs the
# matrix-js-sdk tests in tests/js/ against it (sdk-interop.test.mjs pairs
# matrix-js-sdk with our SDK via cloister-cli; sso-login.test.mjs starts its
# own server from CLOISTER_BIN, with the OpenID provider of tests/oidc-provider;
# audit-wasm.test.mjs runs the audit verifier built for WebAssembly against
# exports the cloister binary writes; console.test.mjs and
# oauth-pages.test.mjs start their own servers and drive Debian's Chromium).
# Exits with the test runner's status.
#
#   scripts/test-js.sh                       # build, start, test, stop
#   scripts/test-js.sh --test-name-pattern=attachment   # extra args go to `node --test`
#   CLOISTER_URL=http://127.0.0.1:8008 scripts/test-js.sh   # test an already running server
#   CLOISTER_BIN=target/debug/cloister scripts/test-js.sh      # use an already built server binary
#   CLOISTER_JS_VERBOSE=1 scripts/test-js.sh  # keep the SDK's debug logging
#   CLOISTER_JS_FILES="sdk-interop.test.mjs" scripts/test-js.sh  # only these files of tests/js
#   CLOISTER_CLI=/path/to/cloister-cli scripts/test-js.sh  # use a prebuilt CLI
#   ELEMENT_X_PROBE=/path/to/element-x-probe scripts/test-js.sh  # a prebuilt matrix-sdk probe
#   CLOISTER_AUDIT_WASM=/path/to/cloister_audit_wasm.wasm scripts/test-js.sh  # a prebuilt verifier
#
# Needs cargo, Node and npm (npm ci brings the Node >= 22 that matrix-js-sdk
# needs, as the npm package "node"). The server's log is printed when a test fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JS_DIR="$ROOT/tests/js"
cd "$ROOT"

SERVER_PID=""
DATA_DIR=""
SERVER_LOG=""

cleanup() {
    local status=$?
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -n "$SERVER_LOG" && -s "$SERVER_LOG" ]]; then
        echo "---- cloister server log (last 80 lines) ----" >&2
        tail -n 80 "$SERVER_LOG" >&2
        echo "---- end of server log ----" >&2
    fi
    [[ -n "$DATA_DIR" ]] && rm -rf "$DATA_DIR"
    [[ -n "${WASM_FILE:-}" ]] && rm -f "$WASM_FILE"
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! command -v node >/dev/null; then
    echo "test-js: node is not installed (Node.js and npm are needed to install the pinned Node >= 22)" >&2
    exit 1
fi

if [[ -z "${CLOISTER_URL:-}" ]]; then
    if [[ -n "${CLOISTER_BIN:-}" ]]; then
        # scripts/test passes the binary `cargo test --workspace` just built;
        # a `cargo build -p` here would resolve features differently and
        # rebuild much of the tree.
        BIN="$CLOISTER_BIN"
    else
        echo "test-js: building the server" >&2
        cargo build -p cloister-server --bin cloister
        BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/cloister"
    fi
    # sso-login.test.mjs starts its own server, configured with an OpenID provider.
    export CLOISTER_BIN="$BIN"

    PORT="$(node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });')"
    DATA_DIR="$(mktemp -d -t cloister-js-XXXXXX)"
    SERVER_LOG="$DATA_DIR/server.log"
    export CLOISTER_URL="http://127.0.0.1:$PORT"

    echo "test-js: starting $BIN serve on $CLOISTER_URL (data in $DATA_DIR)" >&2
    CLOISTER_LISTEN="127.0.0.1:$PORT" \
    CLOISTER_DATA_DIR="$DATA_DIR/data" \
    CLOISTER_REGISTRATION=open \
    CLOISTER_RATE_LIMIT__ENABLED=false \
    NO_COLOR=1 \
        "$BIN" serve >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!

    for attempt in $(seq 1 150); do
        if curl -fsS -o /dev/null "$CLOISTER_URL/health" 2>/dev/null; then
            break
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "test-js: the server exited before it became healthy" >&2
            exit 1
        fi
        if [[ $attempt -eq 150 ]]; then
            echo "test-js: the server did not answer GET /health within 30 s" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "test-js: server is up" >&2
else
    echo "test-js: testing the server at $CLOISTER_URL" >&2
fi

# audit-wasm.test.mjs loads the audit verifier compiled to WebAssembly: the
# one the server embeds for its console (server/build.rs), or else a build
# of its own.
if [[ -z "${CLOISTER_AUDIT_WASM:-}" ]]; then
    WASM_FILE="$(mktemp -t cloister-audit-XXXXXX.wasm)"
    if curl -fsS -o "$WASM_FILE" "$CLOISTER_URL/_cloister/console/assets/audit_verify.wasm" 2>/dev/null; then
        echo "test-js: using the audit verifier the server embeds" >&2
        CLOISTER_AUDIT_WASM="$WASM_FILE"
    else
        rm -f "$WASM_FILE"
        echo "test-js: building the audit verifier for WebAssembly" >&2
        CLOISTER_AUDIT_WASM="$("$ROOT/scripts/build-audit-wasm.sh")"
    fi
    export CLOISTER_AUDIT_WASM
fi

# sdk-interop.test.mjs drives our SDK through cloister-cli.
if [[ -z "${CLOISTER_CLI:-}" ]]; then
    echo "test-js: building cloister-cli" >&2
    cargo build -p cloister-cli --bin cloister-cli
    export CLOISTER_CLI="${CARGO_TARGET_DIR:-$ROOT/target}/debug/cloister-cli"
fi

# element-x.test.mjs drives matrix-sdk (Element X's library) through the
# element-x-probe binary of tests/element-x.
if [[ -z "${ELEMENT_X_PROBE:-}" ]]; then
    echo "test-js: building element-x-probe" >&2
    cargo build -p cloister-element-x-tests --bin element-x-probe
    export ELEMENT_X_PROBE="${CARGO_TARGET_DIR:-$ROOT/target}/debug/element-x-probe"
fi

# node_modules is not committed: install it from the lockfile when it is
# missing or older than package-lock.json (npm ci writes
# node_modules/.package-lock.json last).
if [[ ! -f "$JS_DIR/node_modules/.package-lock.json" || "$JS_DIR/package-lock.json" -nt "$JS_DIR/node_modules/.package-lock.json" ]]; then
    echo "test-js: installing matrix-js-sdk and Node.js from package-lock.json (npm ci)" >&2
    (cd "$JS_DIR" && npm ci --no-audit --no-fund)
fi

# sso-login.test.mjs runs the OpenID provider the Rust tests use
# (tests/src/oidc.rs); install it the same way: npm ci when
# node_modules/.cloister-installed-package-lock.json is not a copy of
# package-lock.json, under the same lock, and that copy written after.
OIDC_DIR="$ROOT/tests/oidc-provider"
install_oidc_provider() {
    if ! cmp -s "$OIDC_DIR/package-lock.json" "$OIDC_DIR/node_modules/.cloister-installed-package-lock.json"; then
        echo "test-js: installing oidc-provider from tests/oidc-provider/package-lock.json (npm ci)" >&2
        (cd "$OIDC_DIR" && npm ci --no-audit --no-fund </dev/null)
        cp "$OIDC_DIR/package-lock.json" "$OIDC_DIR/node_modules/.cloister-installed-package-lock.json"
    fi
}
if command -v flock >/dev/null; then
    (
        flock 9
        install_oidc_provider
    ) 9>"${TMPDIR:-/tmp}/cloister-oidc-provider-npm-ci.lock"
else
    install_oidc_provider
fi

# matrix-js-sdk needs Node >= 22; the machine's Node may be older, so the
# tests run on the Node that package.json pins (npm package "node").
NODE="$JS_DIR/node_modules/.bin/node"
if [[ ! -x "$NODE" ]]; then
    NODE=node
fi
NODE_MAJOR="$("$NODE" -p 'process.versions.node.split(".")[0]')"
if [[ "$NODE_MAJOR" -lt 22 ]]; then
    echo "test-js: matrix-js-sdk needs Node >= 22, $NODE is $("$NODE" --version)" >&2
    exit 1
fi
echo "test-js: running the tests on Node $("$NODE" --version)" >&2

set +e
FILES=("$JS_DIR"/*.test.mjs)
if [[ -n "${CLOISTER_JS_FILES:-}" ]]; then
    read -r -a FILES <<<"$CLOISTER_JS_FILES"
    FILES=("${FILES[@]/#/$JS_DIR/}")
fi
"$NODE" --test "$@" "${FILES[@]}"
STATUS=$?
set -e
exit $STATUS
