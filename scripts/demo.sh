#!/usr/bin/env bash
# Runs the main demo: the orders perimeter (examples/orders/guard.toml) over canned requests,
# printing each verdict and its security event.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run -q -p guard-demo
