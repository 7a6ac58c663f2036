#!/usr/bin/env bash
# Installs what the benchmark harness needs (Debian 12) on top of weir's own build and test
# packages, only those missing: scripts/deps.sh does the work. Not part of `make test`.
set -euo pipefail

# openssl: certificate and `openssl s_time` (scenario 7); curl: the HTTP/1.1 and h2 checks
# before scenarios 8 and 9; nghttp2-client: h2load (scenario 9, callgrind, strace).
WEIR_DEPS_EXTRA="haproxy nginx wrk nghttp2-client gnuplot-nox valgrind strace procps python3 \
util-linux openssl curl" exec bash "$(dirname "$0")/../scripts/deps.sh"
