#!/usr/bin/env bash
# Starts `trellis serve --http-enabled` on free loopback ports and checks the
# HTTP/JSON gateway's JSON against the official Python client's canonical
# mapping (tests/python_client/test_gateway.py). Reuses the venv of
# tests/proto_compat.sh (same pinned authzed).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${PROTO_COMPAT_VENV:-${TMPDIR:-/tmp}/trellis-proto-compat-venv}"
if [[ ! -x "$venv/bin/python" ]]; then
  # proto_compat.sh creates and pins the venv; its check itself is quick.
  bash "$root/tests/proto_compat.sh" >/dev/null
fi
py="$venv/bin/python"

bin="${TRELLIS_BIN:-$root/target/debug/trellis}"
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc_port="$(free_port)"
http_port="$(free_port)"
key="gateway-test-key"
log="$(mktemp)"
TRELLIS_METRICS_ADDR= "$bin" serve --grpc-addr "127.0.0.1:$grpc_port" --grpc-preshared-key "$key" \
  --http-enabled --http-addr "127.0.0.1:$http_port" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT

# Wait (bounded) until both ports accept connections.
"$py" - "$grpc_port" "$http_port" <<'PY'
import socket, sys, time
deadline = time.time() + 30
for port in sys.argv[1:]:
    while True:
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                sys.exit(f"trellis did not accept connections on {port} within 30 s")
            time.sleep(0.1)
PY

"$py" "$here/test_gateway.py" "127.0.0.1:$grpc_port" "127.0.0.1:$http_port" "$key" \
  || { echo "--- server log"; cat "$log"; exit 1; }
