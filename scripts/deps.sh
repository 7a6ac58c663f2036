#!/usr/bin/env bash
# Installs the Debian 12 packages weir needs to build and test, only those missing.
# Idempotent; runs as root or through sudo.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config clang clang-format
  libyaml-cpp-dev libfmt-dev libssl-dev libnghttp2-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev libclang-rt-14-dev
  python3 python3-h2 curl procps ca-certificates openssl nghttp2-client
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
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
