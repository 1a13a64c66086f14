#!/usr/bin/env bash
# Installs everything the tests talk to: redis-server, moto's server, cargo-lambda, oidc-provider. Idempotent.
set -euo pipefail
DIR="$(cd "$(dirname "$0")" && pwd)"
"$DIR/tools/redis.sh"
"$DIR/tools/python-tools.sh"
"$DIR/tools/oidc.sh"
