#!/usr/bin/env bash
# weft control under load: bash bench/control.sh [SERVICES; 1000] [PROXIES; 100] [CHANGES; 20] [DEBOUNCE_MS; 100]
# The control plane runs on core 0, the simulated proxies on core 1 (taskset, util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p weft-cli -p weft-bench-control
export WEFT_BIN="$PWD/target/release/weft"
taskset -c 1 target/release/control-bench "$@"
