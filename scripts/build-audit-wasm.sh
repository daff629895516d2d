#!/usr/bin/env bash
# Builds the audit verifier as WebAssembly (audit/wasm) and prints the path
# of the .wasm. Needs the wasm32-unknown-unknown target (.ci/run adds it:
# rustup target add wasm32-unknown-unknown). No wasm-bindgen: the module has
# a plain ABI that audit/wasm/verify.mjs loads with the WebAssembly API.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    echo "build-audit-wasm: the wasm32-unknown-unknown target is missing (rustup target add wasm32-unknown-unknown)" >&2
    exit 1
fi
cargo build -q -p cloister-audit-wasm --target wasm32-unknown-unknown --release >&2
echo "$(realpath -m "${CARGO_TARGET_DIR:-target}")/wasm32-unknown-unknown/release/cloister_audit_wasm.wasm"
