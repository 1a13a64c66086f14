#!/usr/bin/env bash
# Installs redis-server (Debian package) when it is missing. Tests start their own instance on a free
# loopback port with persistence off and stop it by PID; nothing is started here.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  echo "redis-server: $(redis-server --version | head -c 40)"
  exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq redis-server >/dev/null
# The package may start a system instance on 6379; tests never use it, stop it to keep the machine quiet.
($SUDO service redis-server stop >/dev/null 2>&1 || true)
echo "redis-server: installed $(redis-server --version | head -c 40)"
