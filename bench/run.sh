#!/usr/bin/env bash
# Benchmarks weir against HAProxy and NGINX (one worker each, same origin) in one run.
#
#   bash bench/run.sh           all scenarios, 1-6 and 10 plain HTTP/1.1, 7-9 TLS and HTTP/2
#                               (BENCH_ROUNDS rounds of BENCH_DURATION s each, default
#                               3 x 10 s), 11 server kills and reloads (weir and HAProxy,
#                               3 x 25 s), 12-15 compression and static files, then callgrind
#                               and strace; writes bench/results/latest.md and latest.png
#                               (~28 minutes)
#   bash bench/run.sh --quick   smoke test: 1 round, 3 s per run, fewer callgrind/strace
#                               requests; writes bench/results/raw/quick/latest.md
#   BENCH_SCENARIOS=s7,s8,s9 bash bench/run.sh
#                               only those scenarios; callgrind and strace (which measure
#                               scenario 1's load) run only when the subset includes s1
#   BENCH_SCENARIOS=s11 bash bench/run.sh
#                               only scenario 11, failures under server kills and reloads
#                               (weir and HAProxy, BENCH_ROUNDS x 25 s each; bench/chaos.py)
#   BENCH_SCENARIOS=edge bash bench/run.sh
#                               only scenarios 12-15: compression (weir, HAProxy, NGINX; weir
#                               per algorithm) and static files (weir, NGINX); bench/edge_scenarios.py
#   BENCH_SCENARIOS=grpc bash bench/run.sh
#                               only scenarios 16-17: gRPC unary calls over h2c (weir, HAProxy,
#                               NGINX grpc_pass), HTTP/1.1 clients to an h2c backend;
#                               bench/grpc_scenarios.py (backend: weir_h2_echo, built on demand)
#   BENCH_SCENARIOS=h3 bash bench/run.sh
#                               only HTTP/3 against HTTP/2 through weir (weir alone; run last in
#                               a full run, ~2 min); bench/h3_scenarios.py, report in
#                               bench/results/h3-latest.md
#
# Environment: WEIR_BIN (default build/release/weir), BENCH_ROUNDS, BENCH_DURATION,
# BENCH_SCENARIOS (e.g. s1,s5 or s10), BENCH_PROXIES (e.g. haproxy,nginx), BENCH_TLS_CLIENTS,
# BENCH_CG_REQUESTS, BENCH_STRACE_REQUESTS, BENCH_NO_PIN=1, BENCH_OUT (data + report dir),
# BENCH_CHAOS_DURATION, BENCH_CHAOS_SEED (scenario 11), WEIR_H2_ECHO_BIN (16-17).
# See bench/README.md.

source "$(dirname "$0")/common.sh"

# "h3" (bench/h3_scenarios.py, weir alone, its own report) is not one of bench.py's ids: take it
# out of the list bench.py gets; BENCH_SCENARIOS=h3 alone runs only it.
H3=""
if [ -z "${BENCH_SCENARIOS:-}" ]; then
  H3=1
elif [[ ",$BENCH_SCENARIOS," == *,h3,* ]]; then
  H3=1
  BENCH_SCENARIOS="$(echo ",$BENCH_SCENARIOS," | sed 's/,h3,/,/g; s/^,*//; s/,*$//')"
  [ -n "$BENCH_SCENARIOS" ] || H3=only
  export BENCH_SCENARIOS
fi
if [ -n "$H3" ] && [[ ",${BENCH_PROXIES:-weir}," != *,weir,* ]]; then
  echo "bench: BENCH_PROXIES without weir: the HTTP/3 scenario (weir only) skipped" >&2
  [ "$H3" = only ] && exit 0
  H3=""
fi

if [ "$H3" != only ]; then
  timeout --foreground 2700 "$PY" bench/bench.py scenarios $QUICK
  if [ -z "${BENCH_SCENARIOS:-}" ] || [[ ",$BENCH_SCENARIOS," == *,s1,* ]]; then
    timeout --foreground 900 "$PY" bench/bench.py callgrind $QUICK || echo "bench: callgrind failed" >&2
    timeout --foreground 300 "$PY" bench/bench.py syscalls $QUICK || echo "bench: syscalls failed" >&2
  else
    echo "bench: BENCH_SCENARIOS without s1: callgrind and strace skipped (the report keeps their last results)" >&2
  fi
  "$PY" bench/bench.py report $QUICK
fi
# HTTP/3 against HTTP/2 through weir: a failed run makes run.sh fail (after everything else)
if [ -n "$H3" ]; then
  timeout --foreground 900 "$PY" bench/h3_scenarios.py $QUICK
fi
