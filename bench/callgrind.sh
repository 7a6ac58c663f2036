#!/usr/bin/env bash
# Instructions per request of each proxy under valgrind --tool=callgrind (scenario 1 over one
# keep-alive connection, BENCH_CG_REQUESTS requests, default 20,000), then rebuilds the report.
#
#   bash bench/callgrind.sh [--quick]
#
# See bench/README.md.

source "$(dirname "$0")/common.sh"

timeout --foreground 900 "$PY" bench/bench.py callgrind $QUICK
"$PY" bench/bench.py report $QUICK
