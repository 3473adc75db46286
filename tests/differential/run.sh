#!/usr/bin/env bash
# Differential test: start a Trellis server, replay tests/differential/cases.json (SpiceDB 1.54's
# recorded answers) against it with compare.py, stop the server. Exit status is compare.py's.
#
#   tests/differential/run.sh [compare.py options, e.g. --seed 42 --quiet]
#
# Environment:
#   TRELLIS_BIN              server binary (default target/debug/trellis; must accept
#                            `serve --grpc-addr HOST:PORT --grpc-preshared-key KEY`).
#                            TRELLIS_BIN=tests/differential/spicedb_shim.py runs against real SpiceDB.
#   TRELLIS_KEY              preshared key (default: random)
#   TRELLIS_PORT             port (default: a free one)
#   TRELLIS_STARTUP_TIMEOUT  seconds to wait for gRPC health SERVING (default 60)
#   TRELLIS_LOG              server output file (default target/differential/server-PORT.log)
#   PYTHON                   python3 used to create the client venv (default python3)
# Python client: the oracle's venv (tests/oracle/setup.sh) when it has authzed, otherwise a venv
# at target/differential/venv with the pinned packages of requirements.txt.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$repo/target/differential"
mkdir -p "$work"

# 1. Python with the authzed client.
oracle_py="${TRELLIS_ORACLE_DIR:-$repo/target/oracle}/venv/bin/python"
if [ -x "$oracle_py" ] && "$oracle_py" -c 'import authzed.api.v1, grpc' 2>/dev/null; then
    py="$oracle_py"
else
    venv="$work/venv"
    if [ ! -x "$venv/bin/python" ]; then
        "${PYTHON:-python3}" -m venv "$venv"
    fi
    if ! cmp -s "$here/requirements.txt" "$venv/.trellis-requirements"; then
        "$venv/bin/pip" install --disable-pip-version-check --quiet -r "$here/requirements.txt"
        cp "$here/requirements.txt" "$venv/.trellis-requirements"
    fi
    py="$venv/bin/python"
fi

# 2. The server.
bin="${TRELLIS_BIN:-$repo/target/debug/trellis}"
if [ ! -x "$bin" ]; then
    echo "run.sh: no server binary at $bin (build it first: cargo build)" >&2
    exit 2
fi
port="${TRELLIS_PORT:-$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
key="${TRELLIS_KEY:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
endpoint="127.0.0.1:$port"
log="${TRELLIS_LOG:-$work/server-$port.log}"  # per port: runs may overlap

"$bin" serve --grpc-addr "$endpoint" --grpc-preshared-key "$key" >"$log" 2>&1 &
server_pid=$!

stop_server() {
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$server_pid" 2>/dev/null; then
            echo "run.sh: server did not stop after SIGTERM; sending SIGKILL" >&2
            kill -KILL "$server_pid" 2>/dev/null || true
        fi
    fi
    wait "$server_pid" 2>/dev/null || true
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 3. Wait for gRPC health SERVING while the server is alive.
deadline=$((SECONDS + ${TRELLIS_STARTUP_TIMEOUT:-60}))
until "$py" "$here/compare.py" --endpoint "$endpoint" --token "$key" --health-check >/dev/null 2>&1; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "run.sh: server exited during startup; its output ($log):" >&2
        tail -n 30 "$log" >&2
        exit 2
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "run.sh: server not SERVING on $endpoint after ${TRELLIS_STARTUP_TIMEOUT:-60}s; its output ($log):" >&2
        tail -n 30 "$log" >&2
        exit 2
    fi
    sleep 0.3
done

# 4. Compare.
echo "run.sh: $bin serving on $endpoint (log: $log)"
status=0
"$py" "$here/compare.py" --endpoint "$endpoint" --token "$key" "$@" || status=$?
exit "$status"
