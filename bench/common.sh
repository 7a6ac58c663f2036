# Sourced by bench/run.sh, bench/callgrind.sh and bench/syscalls.sh.
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH_DIR")"
cd "$ROOT"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

QUICK=""
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=--quick ;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$(basename "$0"): unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

bash "$BENCH_DIR/deps.sh"

export WEIR_BIN="${WEIR_BIN:-$ROOT/build/release/weir}"
# BENCH_PROXIES=haproxy,nginx measures only those (validated by bench.py); no build then
if [[ ",${BENCH_PROXIES:-weir}," == *,weir,* ]] && [ ! -x "$WEIR_BIN" ]; then
  echo "bench: building the release binary" >&2
  cmake --preset release >/dev/null
  cmake --build --preset release -j "$(nproc)"
fi

# 10,000 idle connections need file descriptors on both ends.
hard="$(ulimit -Hn)"
[ "$hard" = unlimited ] && hard=65536
ulimit -n "$hard"
if [ "$(ulimit -n)" -lt 12000 ]; then
  echo "bench: warning: only $(ulimit -n) file descriptors allowed; scenario 5 needs ~10,100 per process" >&2
fi
