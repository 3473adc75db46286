#!/usr/bin/env bash
# Prints the path of a python3 with the official `authzed` client, for the differential harness:
# the oracle's venv (tests/oracle/setup.sh) when it has authzed, otherwise a venv at
# target/differential/venv with the pinned packages of requirements.txt (made on first use).
#   py="$(bash tests/differential/python.sh)"
# Environment: TRELLIS_ORACLE_DIR (default target/oracle), PYTHON (python3 that makes the venv).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$repo/target/differential"

oracle_py="${TRELLIS_ORACLE_DIR:-$repo/target/oracle}/venv/bin/python"
if [ -x "$oracle_py" ] && "$oracle_py" -c 'import authzed.api.v1, grpc' 2>/dev/null; then
    echo "$oracle_py"
    exit 0
fi
mkdir -p "$work"
venv="$work/venv"
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv" >&2
fi
if ! cmp -s "$here/requirements.txt" "$venv/.trellis-requirements"; then
    "$venv/bin/pip" install --disable-pip-version-check --quiet -r "$here/requirements.txt" >&2
    cp "$here/requirements.txt" "$venv/.trellis-requirements"
fi
echo "$venv/bin/python"
