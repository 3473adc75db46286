#!/usr/bin/env bash
# The dispatch cluster benchmark of issue #7 in one command: builds Trellis in
# release mode, starts NODES `trellis serve` processes (default 3) over one
# datastore, each serving the peer protocol and listing the others as
# `dns:///localhost:PORT` upstreams, loads the social network through node 0,
# measures it with `trellis bench run` against node 0, then reads every node's
# /metrics and prints the dispatch cache hit ratio and where subproblems were
# answered. Results land in target/bench/cluster-* and on stdout.
#
#   benches/cluster.sh [RELATIONSHIPS] [extra `bench run` flags...]
#   NODES=1 benches/cluster.sh 100000                 # one node on the same kind of database
#   NODES=1 DATASTORE=memory benches/cluster.sh 100000
#   NODES=1 DATASTORE=memory TRELLIS_DISPATCH_CACHE_ENABLED=false benches/cluster.sh 100000
#
# The nodes of a cluster must read the same data, so with more than one node the
# datastore is PostgreSQL: TRELLIS_BENCH_POSTGRES_URI (an empty database), or else
# a throwaway PostgreSQL 15 cluster this script starts in a temporary folder
# (TRELLIS_PG_BIN, default /usr/lib/postgresql/15/bin; as the `postgres` user
# when run as root) and removes at the end. `trellis serve` flags can be given
# as TRELLIS_* environment variables (TRELLIS_DISPATCH_CACHE_ENABLED=false).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
n="${1:-100000}"
shift || true
nodes="${NODES:-3}"
datastore="${DATASTORE:-postgres}"
key="bench-$$"
out="$repo/target/bench"
bin="$repo/target/release/trellis"
label="cluster-$nodes-$datastore-$n"
mkdir -p "$out"
if [ "$datastore" = memory ] && [ "$nodes" -gt 1 ]; then
    echo "cluster.sh: $nodes nodes need one shared datastore: use DATASTORE=postgres" >&2
    exit 2
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for_port() {
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "cluster.sh: nothing listens on $1" >&2
    return 1
}

pids=()
pg_root=""
as_pg=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$pg_root" ]; then
        "${as_pg[@]}" "$pg_bin/pg_ctl" stop -m immediate -D "$pg_root/data" >/dev/null 2>&1 || true
        rm -rf "$pg_root"
    fi
}
trap cleanup EXIT

cargo build --release --quiet --bin trellis --manifest-path "$repo/Cargo.toml"

engine=()
if [ "$datastore" = postgres ]; then
    uri="${TRELLIS_BENCH_POSTGRES_URI:-}"
    if [ -z "$uri" ]; then
        pg_bin="${TRELLIS_PG_BIN:-/usr/lib/postgresql/15/bin}"
        pg_root="$(mktemp -d /tmp/trellis-bench-pg.XXXXXX)"
        if [ "$(id -u)" = 0 ]; then
            chown postgres:postgres "$pg_root"
            as_pg=(runuser -u postgres --)
        fi
        pg_port="$(free_port)"
        "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_root/data" -U postgres --auth=trust --no-sync \
            -E UTF8 --locale=C >/dev/null
        "${as_pg[@]}" "$pg_bin/pg_ctl" start -w -t 60 -D "$pg_root/data" -l "$pg_root/server.log" \
            -o "-p $pg_port -k $pg_root -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400" \
            >/dev/null
        uri="postgres://postgres@127.0.0.1:$pg_port/postgres"
    fi
    "$bin" datastore migrate head --datastore-conn-uri "$uri"
    engine=(--datastore-engine postgres --datastore-conn-uri "$uri")
fi

grpc=() metrics=() peers=() upstreams=""
for i in $(seq 0 $((nodes - 1))); do
    grpc+=("$(free_port)") metrics+=("$(free_port)") peers+=("$(free_port)")
    upstreams+="${upstreams:+,}dns:///localhost:${peers[$i]}"
done
for i in $(seq 0 $((nodes - 1))); do
    cluster=()
    if [ "$nodes" -gt 1 ]; then
        cluster=(--dispatch-cluster-enabled --dispatch-cluster-addr "127.0.0.1:${peers[$i]}"
            --dispatch-upstream-addr "$upstreams")
    fi
    "$bin" serve --grpc-addr "127.0.0.1:${grpc[$i]}" --metrics-addr "127.0.0.1:${metrics[$i]}" \
        --grpc-preshared-key "$key" "${engine[@]}" "${cluster[@]}" >"$out/$label-node$i.log" 2>&1 &
    pids+=($!)
done
for i in $(seq 0 $((nodes - 1))); do wait_for_port "${grpc[$i]}"; done

"$bin" bench generate --endpoint "127.0.0.1:${grpc[0]}" --token "$key" --relationships "$n" --seed 1
"$bin" bench run --endpoint "127.0.0.1:${grpc[0]}" --token "$key" --relationships "$n" --seed 1 \
    --server-pid "${pids[0]}" --json-out "$out/$label.json" --plot-out "$out/$label.svg" "$@"

# Sum a counter over its label sets in one node's scrape.
total() { awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d", s }' "$2"; }
hits=0 misses=0
for i in $(seq 0 $((nodes - 1))); do
    scrape="$out/$label-node$i.metrics"
    curl -s "http://127.0.0.1:${metrics[$i]}/metrics" >"$scrape"
    h="$(total trellis_dispatch_cache_hits_total "$scrape")"
    m="$(total trellis_dispatch_cache_misses_total "$scrape")"
    hits=$((hits + h)) misses=$((misses + m))
    remote="$(grep '^trellis_dispatch_remote_total' "$scrape" | sed 's/trellis_dispatch_remote_total//' | tr '\n' ' ' || true)"
    echo "node $i: cache hits $h, misses $m${remote:+; routed: $remote}"
done
if [ $((hits + misses)) -gt 0 ]; then
    awk -v h="$hits" -v m="$misses" 'BEGIN { printf "dispatch cache hit ratio over %d nodes: %.1f %% (%d of %d subproblems)\n", ARGV[1], 100 * h / (h + m), h, h + m }' "$nodes"
else
    echo "dispatch cache: no lookups recorded (cache off)"
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "report: $out/$label.json, plot: $out/$label.svg, scrapes: $out/$label-node*.metrics"
