#!/usr/bin/env bash
# Compare proto/authzed/api/v1 against the descriptors shipped in the PyPI
# `authzed` client (see tests/proto_compat.py). Creates/reuses a venv under
# ${TMPDIR:-/tmp}; override with PROTO_COMPAT_VENV=/path.
set -euo pipefail

AUTHZED_VERSION="${AUTHZED_VERSION:-1.25.0}"
GRPCIO_TOOLS_VERSION="${GRPCIO_TOOLS_VERSION:-1.85.1}"
PYTHON="${PYTHON:-python3}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="${PROTO_COMPAT_VENV:-${TMPDIR:-/tmp}/trellis-proto-compat-venv}"
stamp="$venv/.trellis-pins"
want="authzed==$AUTHZED_VERSION grpcio-tools==$GRPCIO_TOOLS_VERSION"

if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "authzed==$AUTHZED_VERSION" "grpcio-tools==$GRPCIO_TOOLS_VERSION"
  echo "$want" >"$stamp"
fi

exec "$venv/bin/python" "$here/proto_compat.py" --proto-root "$root/proto" "$@"
