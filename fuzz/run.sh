#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS seconds on a working copy of its seed corpus
# (fuzz/corpus-work/, gitignored). Exits non-zero if a target crashes or is missing.
# Usage: fuzz/run.sh BUILD_DIR SECONDS
# FUZZ_TOTAL_SECONDS=N (environment, optional) overrides SECONDS: N seconds shared evenly by all
# targets (at least 1 each), e.g. the short pass of .ci/run.
set -u
build=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS}
seconds=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
targets=(fuzz_request_parser fuzz_response_parser fuzz_body_decoder fuzz_config fuzz_h2_session
         fuzz_proxy_protocol fuzz_client_hello fuzz_accept_encoding fuzz_cache_control
         fuzz_static_path fuzz_h2_upstream fuzz_quic_datagram)
if [[ -n ${FUZZ_TOTAL_SECONDS:-} ]]; then
  seconds=$((FUZZ_TOTAL_SECONDS / ${#targets[@]}))
  ((seconds >= 1)) || seconds=1
fi
failed=0

for t in "${targets[@]}"; do
  bin=""
  for candidate in "$build/fuzz/$t" "$build/$t"; do
    if [[ -x $candidate ]]; then bin=$candidate; break; fi
  done
  if [[ -z $bin ]]; then
    echo "FAIL $t: no binary under $build (build with -DWEIR_FUZZ=ON)"
    failed=1
    continue
  fi
  work="$here/corpus-work/$t"
  artifacts="$here/corpus-work/artifacts"
  mkdir -p "$work" "$artifacts"
  cp -n "$here/corpus/$t/"* "$work/" 2>/dev/null || true
  log="$here/corpus-work/$t.log"
  dict="$here/http.dict"
  [[ -f $here/$t.dict ]] && dict="$here/$t.dict"
  "$bin" "$work" -dict="$dict" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/$t-" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  if [[ $rc -ne 0 ]]; then
    echo "FAIL $t (exit $rc), log: $log"
    grep -E 'ERROR|check failed|Test unit written' "$log" | head -5
    failed=1
  else
    echo "ok   $t: ${execs:-?} execs in ${seconds}s, corpus $(ls "$work" | wc -l) files"
  fi
done
exit $failed
