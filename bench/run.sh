#!/usr/bin/env bash
# Benchmarks weir against HAProxy and NGINX (one worker each, same origin) in one run.
#
#   bash bench/run.sh           all scenarios (BENCH_ROUNDS rounds of BENCH_DURATION s each,
#                               default 3 x 10 s), then callgrind and strace; writes
#                               bench/results/latest.md and latest.png (~10 minutes)
#   bash bench/run.sh --quick   smoke test: 1 round, 3 s per run, fewer callgrind/strace
#                               requests; writes bench/results/raw/quick/latest.md
#
# Environment: WEIR_BIN (default build/release/weir), BENCH_ROUNDS, BENCH_DURATION,
# BENCH_SCENARIOS (e.g. s1,s5), BENCH_CG_REQUESTS, BENCH_STRACE_REQUESTS, BENCH_NO_PIN=1.
# See bench/README.md.

source "$(dirname "$0")/common.sh"

timeout --foreground 1800 "$PY" bench/bench.py scenarios $QUICK
timeout --foreground 900 "$PY" bench/bench.py callgrind $QUICK || echo "bench: callgrind failed" >&2
timeout --foreground 300 "$PY" bench/bench.py syscalls $QUICK || echo "bench: syscalls failed" >&2
"$PY" bench/bench.py report $QUICK
