#!/usr/bin/env bash
# Regenerates include/cloister.h with the pinned cbindgen into a temporary
# file and fails if the committed header differs. `--fix` rewrites it.
set -euo pipefail
cd "$(dirname "$0")"

CBINDGEN_VERSION=0.29.0
if [ "$(cbindgen --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]; then
    echo "check-header: need cbindgen $CBINDGEN_VERSION (cargo install cbindgen --version =$CBINDGEN_VERSION --locked)" >&2
    exit 1
fi

fresh=$(mktemp "${TMPDIR:-/tmp}/cloister.h.XXXXXX")
trap 'rm -f "$fresh"' EXIT
cbindgen --quiet --config cbindgen.toml --crate cloister-ffi --output "$fresh"

if [ "${1:-}" = "--fix" ]; then
    cp "$fresh" include/cloister.h
    echo "check-header: include/cloister.h regenerated"
    exit 0
fi
if ! diff -u include/cloister.h "$fresh"; then
    echo "check-header: ffi/include/cloister.h is stale; run ffi/check-header.sh --fix and commit it" >&2
    exit 1
fi
echo "check-header: ffi/include/cloister.h is up to date"
