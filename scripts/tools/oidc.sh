#!/usr/bin/env bash
# Installs the OpenID Provider the identity tests start (tests/tests/identity): the npm package
# `oidc-provider`, pinned in scripts/tools/oidc/package.json and its lockfile, with `npm ci`.
# Needs Node.js >= 20.19 and npm. Nothing is started here.
set -euo pipefail
DIR="$(cd "$(dirname "$0")/oidc" && pwd)"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node and npm are needed for the identity tests (oidc-provider)" >&2
  exit 1
fi
if [ -f "$DIR/node_modules/oidc-provider/package.json" ] \
  && [ "$(node -p "require('$DIR/node_modules/oidc-provider/package.json').version")" = \
       "$(node -p "require('$DIR/package.json').dependencies['oidc-provider']")" ]; then
  echo "oidc-provider: $(node -p "require('$DIR/node_modules/oidc-provider/package.json').version")"
  exit 0
fi
(cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error)
echo "oidc-provider: $(node -p "require('$DIR/node_modules/oidc-provider/package.json').version")"
