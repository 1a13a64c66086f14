#!/usr/bin/env bash
# Installs redis-server (Debian package) when it is missing. Tests start their own instance on a free
# loopback port with persistence off and stop it by PID; nothing is started here.
set -euo pipefail
# Debian 12's package (7.0.x): the series the Redis tests (TLS, cluster, Lua GCRA) are written for.
# The exact patch level follows Debian's security updates, so the series is what is pinned.
REDIS_SERIES="7.0."
check_series() {
  local v
  v="$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')"
  case "$v" in
    "$REDIS_SERIES"*) echo "redis-server: $v" ;;
    *) echo "redis-server $v is not the pinned ${REDIS_SERIES}x series" >&2; exit 1 ;;
  esac
}
if command -v redis-server >/dev/null 2>&1; then
  check_series
  exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq redis-server >/dev/null
# The package may start a system instance on 6379; tests never use it, stop it to keep the machine quiet.
($SUDO service redis-server stop >/dev/null 2>&1 || true)
check_series
