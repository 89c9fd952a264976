#!/usr/bin/env bash
# Everything CI checks: formatting, lints, and every test in the workspace.
# Needs only the Rust toolchain (rustfmt and clippy components).
set -euo pipefail
cd "$(dirname "$0")/.."
# Istio's reference data (CRD schemas, messages, Bookinfo) sits beside the
# repository; the model tests check against it.
export WEFT_SHARED="${WEFT_SHARED:-$(cd .. && pwd)/shared}"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
