#!/usr/bin/env bash
# Installs the Debian 12 packages weir needs to build and test, only those missing.
# Idempotent; runs as root or through sudo.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config clang clang-format
  libyaml-cpp-dev libfmt-dev libssl-dev libnghttp2-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev libclang-rt-14-dev
  python3 python3-h2 python3-cryptography curl procps ca-certificates openssl nghttp2-client
  wrk libre2-dev haproxy nginx
  libbrotli-dev libzstd-dev zstd python3-brotli nlohmann-json3-dev
  python3-grpcio libc-ares-dev dnsmasq-base chromium chromium-driver python3-selenium
  redis-server libhiredis-dev keepalived bird2 iproute2
  libngtcp2-dev libngtcp2-crypto-gnutls-dev libnghttp3-dev libgnutls28-dev ngtcp2-client
)
if [ "${WEIR_DEPS_EXTRA:-}" != "" ]; then
  read -r -a extra <<<"$WEIR_DEPS_EXTRA"
  PKGS+=("${extra[@]}")
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d: packages such as nginx or haproxy (the benchmark's) must not start system-wide
# services while they install (they would grab port 80 and nothing here uses them).
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod +x "$POLICY"
  created_policy=1
fi
trap '[ $created_policy -eq 1 ] && $SUDO rm -f "$POLICY"' EXIT
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
