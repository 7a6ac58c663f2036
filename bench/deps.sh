#!/usr/bin/env bash
# Installs what the benchmark harness needs (Debian 12), only the packages that are missing.
# Idempotent; runs as root or through sudo. Not part of `make test`.
set -euo pipefail

# openssl: certificate and `openssl s_time` (scenario 7); curl: the HTTP/1.1 and h2 checks
# before scenarios 8 and 9; nghttp2-client: h2load (scenario 9, callgrind, strace).
PKGS=(haproxy nginx wrk nghttp2-client gnuplot-nox valgrind strace procps python3 util-linux
      openssl curl)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "bench/deps.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "bench/deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d: keep the packages' init scripts from starting system-wide nginx/haproxy
# services (they would grab port 80 and are not used by the harness).
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod +x "$POLICY"
  created_policy=1
fi
trap '[ $created_policy -eq 1 ] && $SUDO rm -f "$POLICY"' EXIT
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
