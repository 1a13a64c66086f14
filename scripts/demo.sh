#!/usr/bin/env bash
# The three-cloud demo: builds and starts the orders function of examples/ locally on AWS (under
# `cargo lambda watch`), Azure (the custom handler as the Functions host starts it) and Google
# Cloud (on PORT), all from the one examples/orders/guard.toml; sends the same short scenario to
# each, prints the verdicts side by side and a sample of the security events, then stops
# everything it started. No cloud account needed.
#
#   scripts/demo.sh           the three-cloud demo
#   scripts/demo.sh --moto    the AWS function reads its secrets from Secrets Manager (moto_server)
#   scripts/demo.sh --redis redis://127.0.0.1:6379   limits kept in Redis (one database per cloud)
#   scripts/demo.sh --local   the single-process demo (the perimeter over canned requests)
#
# Secrets come from the Env source and limits are kept in memory unless a flag says otherwise
# (GUARD_DEMO_SECRETS=moto and GUARD_RATE_BACKEND=redis://... do the same as the flags).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--local" ]]; then
    exec cargo run -q -p guard-demo
fi

say() { printf '==> %s\n' "$*"; }

if [[ ! -x .tools/venv/bin/cargo-lambda ]] && ! command -v cargo-lambda >/dev/null; then
    say "installing cargo-lambda into .tools/venv (once)"
    scripts/tools/python-tools.sh
fi
command -v openssl >/dev/null || { echo "the demo needs the openssl command" >&2; exit 1; }

# With Redis the examples are built with their `redis` feature.
features=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    [[ "${args[i]}" == "--redis" ]] && redis=1
done
if [[ -n "${GUARD_RATE_BACKEND:-}" || -n "${redis:-}" ]]; then
    features=(--features aws-orders/redis,azure-orders/redis,gcp-orders/redis)
fi

say "building the three example functions: aws-orders, azure-orders, gcp-orders"
say "(the first build compiles the AWS SDK and takes a few minutes on 2 cores; cargo's progress follows)"
cargo build -p aws-orders -p azure-orders -p gcp-orders "${features[@]}"
say "built"
exec python3 scripts/tools/three_clouds.py "$@"
