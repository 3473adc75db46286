#!/usr/bin/env bash
# The one-command benchmark of issue #8: builds Trellis in release mode, starts one
# `trellis serve` on free ports, loads the social network with `trellis bench generate`,
# measures it with `trellis bench run --server-pid` (latency, answers, the health-call
# floor, server CPU), reads the dispatch cache hit ratio from the server's /metrics, and
# stops the server. Results land in target/bench/ (JSON, SVG, the metrics scrape) and on
# stdout.
#
#   benches/run.sh [RELATIONSHIPS] [extra `bench run` flags...]
#   benches/run.sh 1000000 --duration 20s --concurrency 32
#   benches/run.sh 100000 --rate 5000            # open loop
#
# The memory datastore by default; with TRELLIS_BENCH_POSTGRES_URI=postgres://USER@HOST:PORT/DB
# (an empty database) PostgreSQL, migrated first (only Trellis's own CPU is measured then;
# PostgreSQL's backends are other processes). It is benches/cluster.sh with one node.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -n "${TRELLIS_BENCH_POSTGRES_URI:-}" ]; then
    datastore=postgres
else
    datastore=memory
fi
NODES=1 DATASTORE="$datastore" exec bash "$here/cluster.sh" "$@"
