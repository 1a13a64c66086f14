#!/usr/bin/env bash
# Creates the test tooling's virtualenv in .tools/venv with moto's server (Secrets Manager emulator)
# and cargo-lambda (`cargo lambda watch` / `invoke`). Idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="$ROOT/.tools/venv"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# Pinned versions (requirements.txt); pip does nothing when they are already installed.
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/scripts/tools/requirements.txt"
echo "moto_server: $VENV/bin/moto_server"
echo "cargo-lambda: $("$VENV/bin/cargo-lambda" lambda --version 2>/dev/null || echo present)"
