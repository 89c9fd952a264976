#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for a bounded time and prints what
# it did: executions, coverage (libFuzzer's cov: edges and ft: features)
# and crashes. Not part of CI: it takes SECONDS_PER_TARGET (default 300)
# per target and needs cargo-fuzz (`cargo install cargo-fuzz`).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Corpora grow under fuzz/corpus/<target> (gitignored; seeded from the
# repository's example YAML, a real ClientHello and hand-built discovery
# requests by scripts/fuzz_seeds.py) and are kept between runs. A crash
# leaves its input under fuzz/artifacts/<target>/; keep it as a
# regression test in the crate it fails (see fuzz/README.md).
#
# FUZZ_SANITIZER=none runs without AddressSanitizer (faster; panics,
# hangs and runaway allocations are still found).
set -uo pipefail
cd "$(dirname "$0")/.."
secs="${1:-300}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(load_validate listener_inspect xds_requests path_normalize)
sanitizer="${FUZZ_SANITIZER:-address}"
# cargo-fuzz passes nightly-only flags (-Z sanitizer, -Z extra-const-ub-checks);
# the stable toolchain accepts them under RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz

# Inputs longer than this are cut (bytes): a YAML file, a ClientHello
# with room for a large extension block, a few discovery requests, a
# request path.
max_len() {
  case "$1" in
    load_validate) echo 65536 ;;
    listener_inspect) echo 70000 ;;
    xds_requests) echo 4096 ;;
    path_normalize) echo 1024 ;;
    *) echo 4096 ;;
  esac
}

python3 scripts/fuzz_seeds.py fuzz/corpus
mkdir -p fuzz/logs
status=0
summary=()
for t in "${targets[@]}"; do
  echo "== $t: building" >&2
  if ! cargo fuzz build -s "$sanitizer" "$t"; then
    summary+=("$t: build failed")
    status=1
    continue
  fi
  log="fuzz/logs/$t.log"
  echo "== $t: fuzzing for ${secs}s (log: $log)" >&2
  # -timeout: one input running 10 s is a hang; -rss_limit_mb: past
  # 2 GiB is a runaway allocation. -print_final_stats prints the totals.
  cargo fuzz run -s "$sanitizer" "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  # The last status line (#N DONE/pulse cov: .. ft: .. corp: ..) and the
  # final statistics.
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs_run=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  crashes=$(ls "fuzz/artifacts/$t" 2>/dev/null | wc -l)
  line="$t: exit $rc, ${runs:-?} executions in ${secs_run:-?} s; last: ${last:-none}; inputs under fuzz/artifacts/$t: $crashes"
  if [ "$rc" -ne 0 ]; then
    status=1
    line="$line; FAILED: $(grep -m1 -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log")"
  fi
  summary+=("$line")
  echo "$line" >&2
done
echo
printf '%s\n' "${summary[@]}"
exit $status
