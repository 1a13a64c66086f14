#!/usr/bin/env bash
# Runs every check and test on a fresh machine: installs the tools the tests talk to (redis-server,
# moto, cargo-lambda), then fmt, clippy, per-feature builds, all tests, and docs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n== %s ==\n' "$*"; }

step "tools"
scripts/setup-tools.sh

step "format"
cargo fmt --all --check

step "tests"
cargo test --workspace --all-features --no-fail-fast

step "clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "each guard-core feature on its own"
for f in ingress validate audit verify jwks-http http-client rate-limit redis secrets; do
  cargo check -q -p guard-core --no-default-features --features "$f"
done

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc -q --workspace --no-deps --all-features

echo
echo "all checks passed"
