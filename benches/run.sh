#!/usr/bin/env bash
# The one-command benchmark of issue #8: builds Trellis in release mode, starts
# `trellis serve` (memory datastore) on a free port, loads the social network with
# `trellis bench generate`, measures it with `trellis bench run --server-pid`, and
# stops the server. Results land in target/bench/ (JSON, SVG) and on stdout.
#
#   benches/run.sh [RELATIONSHIPS] [extra `bench run` flags...]
#   benches/run.sh 1000000 --duration 20s --concurrency 32
#   benches/run.sh 100000 --rate 5000            # open loop
#
# With TRELLIS_BENCH_POSTGRES_URI=postgres://USER@HOST:PORT/DB (an empty database) the server runs on
# PostgreSQL instead: the script migrates the database first. Only Trellis's own CPU is measured then;
# PostgreSQL's backends are other processes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
n="${1:-100000}"
shift || true
key="bench-$$"
out="$repo/target/bench"
bin="$repo/target/release/trellis"
mkdir -p "$out"

cargo build --release --quiet --bin trellis --manifest-path "$repo/Cargo.toml"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
engine=()
if [ -n "${TRELLIS_BENCH_POSTGRES_URI:-}" ]; then
    "$bin" datastore migrate head --datastore-conn-uri "$TRELLIS_BENCH_POSTGRES_URI"
    engine=(--datastore-engine postgres --datastore-conn-uri "$TRELLIS_BENCH_POSTGRES_URI")
fi
"$bin" serve --grpc-addr "127.0.0.1:$port" --metrics-addr '' --grpc-preshared-key "$key" "${engine[@]}" \
    >"$out/server-$n.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

"$bin" bench generate --endpoint "127.0.0.1:$port" --token "$key" --relationships "$n" --seed 1
"$bin" bench run --endpoint "127.0.0.1:$port" --token "$key" --relationships "$n" --seed 1 \
    --server-pid "$server" --json-out "$out/run-$n.json" --plot-out "$out/run-$n.svg" "$@"
echo "report: $out/run-$n.json, plot: $out/run-$n.svg"
