#!/usr/bin/env bash
# Load + validate + analyze 10,000 generated resources on one core.
# Usage: bash bench/config.sh [RESOURCES] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p weft-bench-config
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)
"${pin[@]}" target/release/config-bench "$@"
