#!/usr/bin/env bash
# Install the system packages this project needs, when they are missing (Debian/Ubuntu
# package names; installing needs root, as in CI).
#
#   scripts/system-deps.sh build   what `make install` needs: a C++ compiler for pdqhash
#                                  (built from its sdist) and a C compiler for our PDQ
#                                  core (cache/intake/_pdqcore.c), plus Python.h when the venv's
#                                  interpreter is Debian's own python3 without python3-dev
#                                  (and python3-venv, for `python3 -m venv`).
#   scripts/system-deps.sh         the real servers the tests and benches run (redis-server,
#                                  prometheus/promtool, memcached, wrk, ...), never mocked.
set -euo pipefail
declare -A need=()
missing=()
if [ "${1:-}" = "build" ]; then
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  command -v gcc >/dev/null 2>&1 || missing+=(gcc)
  python=${PYTHON:-python3}
  include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  # Debian's own python3 has no ensurepip without python3-venv: `python3 -m venv` fails.
  if ! "$python" -c 'import ensurepip' >/dev/null 2>&1; then
    case "$include" in /usr/include/*) missing+=(python3-venv) ;; esac
  fi
  if [ ! -f "$include/Python.h" ]; then
    case "$include" in
      /usr/include/*) missing+=(python3-dev) ;;  # Debian's own python3
      *) echo "system-deps: $include/Python.h is missing: $python cannot build C extensions" >&2
         exit 1 ;;
    esac
  fi
else
  need=(
    [redis-server]=redis-server [redis-cli]=redis-tools [promtool]=prometheus
    [prometheus]=prometheus [memcached]=memcached [wrk]=wrk [unshare]=util-linux [ip]=iproute2
  )
  for cmd in "${!need[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
  done
fi
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
