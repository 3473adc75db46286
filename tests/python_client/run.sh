#!/usr/bin/env bash
# Starts `trellis serve` on a free loopback port and runs the official
# Python client (PyPI `authzed`) against it. Reuses the venv of
# tests/proto_compat.sh (same pinned authzed).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${PROTO_COMPAT_VENV:-${TMPDIR:-/tmp}/trellis-proto-compat-venv}"
AUTHZED_VERSION="${AUTHZED_VERSION:-1.25.0}"
GRPCIO_TOOLS_VERSION="${GRPCIO_TOOLS_VERSION:-1.85.1}"
stamp="$venv/.trellis-pins"
want="authzed==$AUTHZED_VERSION grpcio-tools==$GRPCIO_TOOLS_VERSION"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "authzed==$AUTHZED_VERSION" "grpcio-tools==$GRPCIO_TOOLS_VERSION"
  echo "$want" >"$stamp"
fi

bin="${TRELLIS_BIN:-$root/target/debug/trellis}"
port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
key="python-client-test-key"
log="$(mktemp)"
# No metrics endpoint: suites may run side by side, and :9090 is shared.
TRELLIS_METRICS_ADDR= "$bin" serve --grpc-addr "127.0.0.1:$port" --grpc-preshared-key "$key" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT

# Wait (bounded) until the server accepts connections.
"$venv/bin/python" - "$port" <<'PY'
import socket, sys, time
deadline = time.time() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("trellis did not accept connections within 30 s")
        time.sleep(0.1)
PY

"$venv/bin/python" "$here/test_client.py" "127.0.0.1:$port" "$key" || { echo "--- server log"; cat "$log"; exit 1; }
