#!/usr/bin/env bash
# Install the real servers the tests and benches run, when they are missing.
# Debian/Ubuntu package names; needs root (CI runs as root).
set -euo pipefail
declare -A need=(
  [redis-server]=redis-server [redis-cli]=redis-tools [promtool]=prometheus
  [prometheus]=prometheus [memcached]=memcached [wrk]=wrk [unshare]=util-linux [ip]=iproute2
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing $pkgs; install them (apt-get install -y $pkgs) or run as root" >&2
  exit 1
fi
echo "system-deps: installing $pkgs" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps exporters and their services out; no service is started
# here: tests start their own servers on free loopback ports.
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
