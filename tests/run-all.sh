#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (one debug build,
# one target dir), then the wire-compatibility check of proto/ against the
# official `authzed` client's descriptors.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# --all-targets also builds the benches in the test profile and runs each
# benchmark once as a smoke test; nothing is timed here.
cargo test --locked --all-targets

echo "== proto wire compatibility (authzed.api.v1 vs the official client) =="
bash tests/proto_compat.sh

echo "== the official Python client (authzed) against trellis serve =="
bash tests/python_client/run.sh

echo "== the HTTP/JSON gateway's JSON against the official client's canonical mapping =="
bash tests/python_client/gateway.sh

echo "== differential: random cases recorded from real SpiceDB 1.54 (checks, lookups), replayed against trellis =="
bash tests/differential/ci.sh

echo "== deployment: Kubernetes manifests and Dockerfile, validated offline =="
bash tests/deploy/check.sh
