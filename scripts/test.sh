#!/usr/bin/env bash
# Runs every check and test on a fresh machine: installs the tools the tests talk to (redis-server,
# moto, cargo-lambda), then fmt, all tests, clippy, a fuzz smoke run, per-feature builds, docs,
# and the mutants of the security lines the last commit changed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A full run with full debuginfo and incremental caches wrote about 25 GB of target/ and once ran
# a CI disk full. Line tables keep file:line in panics and backtraces; one clean build needs no
# incremental cache. Both can be overridden from the environment.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
step() { printf '\n== %s ==\n' "$*"; }

step "tools"
scripts/setup-tools.sh

step "format"
cargo fmt --all --check

step "tests"
cargo test --workspace --all-features --no-fail-fast

step "clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

# Every libFuzzer target briefly (20,000 executions or 20 s each, RELIABILITY.md): a decoder or
# parser that panics, loops or breaks its invariant on the first inputs fails CI.
step "fuzz smoke"
scripts/fuzz.sh smoke

# Build and run the unit tests of each feature alone, so a test behind `cfg(feature = ...)` that
# only holds with other features on (or stops compiling) is caught, not silently skipped.
step "each guard-core feature on its own (build + unit tests)"
for f in ingress validate audit authz verify jwks-http rate-limit http-client redis secrets server otel outbound otlp ocsf; do
  echo "-- $f"
  cargo test -q -p guard-core --no-default-features --features "$f" --lib
  # Each feature set links its own test binary; the ones already run are not needed again.
  find "${CARGO_TARGET_DIR:-target}/debug/deps" -maxdepth 1 -name 'guard_core-*' -type f -delete
done

step "guard-secrets without its default features, and each feature on its own (build + unit tests)"
for f in "" store http; do
  echo "-- ${f:-(none)}"
  cargo test -q -p guard-secrets --no-default-features --features "$f" --lib
  find "${CARGO_TARGET_DIR:-target}/debug/deps" -maxdepth 1 -name 'guard_secrets-*' -type f -delete
done

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc -q --workspace --no-deps --all-features

# The mutants of the security-file lines the last commit changed (RELIABILITY.md, "The quick
# subset in CI"): nothing to do, in well under a second, for a commit that touches none; else
# cargo-mutants is installed and only those mutants run, built on this run's target directory.
# Last, because the mutated copy's artifacts replace the checkout's.
step "mutation testing: the security lines the last commit changed"
MUTANTS_QUICK_CAP="${MUTANTS_QUICK_CAP:-900}" scripts/mutants.sh --quick

echo
echo "all checks passed"
