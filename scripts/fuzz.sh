#!/usr/bin/env bash
# Runs Guard's libFuzzer targets (fuzz/fuzz_targets) with cargo fuzz.
#   scripts/fuzz.sh smoke          every target briefly: 200,000 executions or 20 s, whichever
#                                  comes first (what scripts/test.sh runs in CI)
#   scripts/fuzz.sh runs N         every target for N executions (RELIABILITY.md records 10,000,000)
#   scripts/fuzz.sh one TARGET N   one target for N executions
# A target fails the run when libFuzzer stops on a panic, a broken invariant, a timeout (one input
# over 10 s) or running out of memory: its exit status is non-zero and the input is kept in
# fuzz/artifacts/TARGET/.
# cargo fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable toolchain provide them.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_FUZZ_VERSION="0.13.2"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install -q cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
targets() { cargo fuzz list --fuzz-dir fuzz; }
run() { # target runs [max seconds]
  local t="$1" n="$2" secs="${3:-0}" log status=0
  mkdir -p "fuzz/corpus/$t"
  log="$(mktemp)"
  cargo fuzz run --fuzz-dir fuzz -s none -O "$t" "fuzz/corpus/$t" -- -runs="$n" \
    -max_total_time="$secs" -timeout=10 -max_len=8192 -print_final_stats=1 >"$log" 2>&1 ||
    status=$?
  grep -E "DONE|stat::number_of_executed_units|stat::average_exec_per_sec|Done|ERROR|panicked" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
    rm -f "$log"
    echo "fuzz target $t failed (exit $status): see fuzz/artifacts/$t" >&2
    exit 1
  fi
  rm -f "$log"
}
case "${1:-smoke}" in
  smoke)
    cargo fuzz build --fuzz-dir fuzz -s none -O
    for t in $(targets); do echo "-- $t"; run "$t" 200000 20; done
    ;;
  runs) for t in $(targets); do echo "-- $t"; run "$t" "$2"; done ;;
  one) run "$2" "$3" ;;
  *) echo "usage: $0 smoke | runs N | one TARGET N" >&2; exit 2 ;;
esac
