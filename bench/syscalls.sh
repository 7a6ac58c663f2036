#!/usr/bin/env bash
# System calls per request of each proxy with strace -c -f (scenario 1 over one keep-alive
# connection, BENCH_STRACE_REQUESTS requests, default 5,000), then rebuilds the report.
#
#   bash bench/syscalls.sh [--quick]
#
# See bench/README.md.

source "$(dirname "$0")/common.sh"

timeout --foreground 300 "$PY" bench/bench.py syscalls $QUICK
"$PY" bench/bench.py report $QUICK
