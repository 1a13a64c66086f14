#!/usr/bin/env bash
# Runs Guard's libFuzzer targets (fuzz/fuzz_targets) with cargo fuzz.
#   scripts/fuzz.sh smoke          every target for a short run (what scripts/test.sh does)
#   scripts/fuzz.sh runs N         every target for N executions (RELIABILITY.md records 10,000,000)
#   scripts/fuzz.sh one TARGET N   one target for N executions
# cargo fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable toolchain provide them.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_FUZZ_VERSION="0.13.2"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install -q cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
targets() { cargo fuzz list --fuzz-dir fuzz; }
run() { # target runs
  local t="$1" n="$2"
  mkdir -p "fuzz/corpus/$t"
  cargo fuzz run --fuzz-dir fuzz -s none "$t" "fuzz/corpus/$t" -- -runs="$n" -max_len=8192 \
    -print_final_stats=1 2>&1 | grep -E "stat::number_of_executed_units|Done|ERROR|panicked" || true
  # A crash leaves an artifact; fail loudly.
  if compgen -G "fuzz/artifacts/$t/crash-*" >/dev/null; then
    echo "crash found in $t: see fuzz/artifacts/$t" >&2
    exit 1
  fi
}
case "${1:-smoke}" in
  smoke) cargo fuzz build --fuzz-dir fuzz -s none -O; for t in $(targets); do echo "-- $t"; run "$t" 20000; done ;;
  runs) for t in $(targets); do echo "-- $t"; run "$t" "$2"; done ;;
  one) run "$2" "$3" ;;
  *) echo "usage: $0 smoke | runs N | one TARGET N" >&2; exit 2 ;;
esac
