#!/usr/bin/env bash
# Differential test: start a Trellis server, replay SpiceDB 1.54's recorded answers against it,
# stop the server. Exit status is the comparison's.
#
#   tests/differential/run.sh [compare.py options, e.g. --seed 42 --quiet]
#       CheckPermission: cases.json with compare.py
#   tests/differential/run.sh --lookups [compare_lookups.py options]
#       LookupResources/LookupSubjects: lookups.json with compare_lookups.py
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
# Python client: see python.sh (the oracle's venv, or target/differential/venv).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$repo/target/differential"
mkdir -p "$work"

compare="$here/compare.py"
if [ "${1:-}" = "--lookups" ]; then
    compare="$here/compare_lookups.py"
    shift
fi

# 1. Python with the authzed client.
py="$(bash "$here/python.sh")"

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

# No metrics endpoint: runs may overlap, and :9090 would be shared.
TRELLIS_METRICS_ADDR= "$bin" serve --grpc-addr "$endpoint" --grpc-preshared-key "$key" >"$log" 2>&1 &
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
until "$py" "$compare" --endpoint "$endpoint" --token "$key" --health-check >/dev/null 2>&1; do
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
"$py" "$compare" --endpoint "$endpoint" --token "$key" "$@" || status=$?
exit "$status"
