#!/usr/bin/env bash
# Builds the request fuzzer with libFuzzer's coverage instrumentation on
# stable Rust and runs it. Not part of CI (it runs for minutes by design).
#
#   bash fuzz/run.sh                      # requests, 10 minutes
#   bash fuzz/run.sh schema_roundtrip 60  # another target, one minute
#   PYTHON=/path/to/venv/bin/python bash fuzz/run.sh   # seeds from the authzed client
#
# Findings (crashing inputs) land in fuzz/artifacts/TARGET/; the corpus
# grows in fuzz/corpus/TARGET/. Replay one input:
# fuzz/target/x86_64-unknown-linux-gnu/release/TARGET FILE
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
target="${1:-requests}"
seconds="${2:-600}"

# What cargo-fuzz passes, minus the sanitizer (which needs nightly): the
# coverage counters and comparison tracing libFuzzer is guided by.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros,
# which run on the host and must not be instrumented.
triple="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --target "$triple" --bin "$target"

mkdir -p "corpus/$target" "artifacts/$target"
# Seeds for `requests`: real encoded requests (PYTHON must have the official
# `authzed` package: `pip install authzed`); without it libFuzzer starts
# from nothing and finds the protobuf structure by itself, more slowly.
python="${PYTHON:-python3}"
if [ "$target" = requests ] && [ -z "$(ls -A corpus/requests)" ]; then
    "$python" seeds.py corpus/requests || echo "no seeds (needs the authzed package); starting empty"
fi
# -rss_limit_mb: the in-memory state is rebuilt every few thousand inputs;
# -timeout: a single request that takes 10 s counts as a hang.
"./target/$triple/release/$target" "corpus/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
    -max_len=4096 -artifact_prefix="artifacts/$target/" -print_final_stats=1
