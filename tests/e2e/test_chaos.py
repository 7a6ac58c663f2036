"""Issue 10's chaos, bounded: weir keeps answering while its servers are killed and restarted
and it is reloaded, all under keep-alive load.

Four `weir whoami` servers behind round robin with `retries: 2` and an HTTP health check every
200 ms (rise 2, fall 2); `wrk -t2 -c20` for 20 s; every 2.5 s one server (seeded choice) gets
SIGKILL and is restarted on its port 1 s later; SIGHUP every 4 s. The driver is
bench/chaos.py (the benchmark's scenario 11 runs the same chaos against weir and HAProxy).

Asserted: the chaos really happened (every kill killed a running server, every restart
listened again and got requests from weir before its next kill, every reload was applied,
enough requests went through that a stalled run cannot pass), and wrk's failures (non-2xx/3xx
responses + socket errors) stayed at or below 0.02 % of its requests. The figures, with the
breakdown by cause, are printed whatever the outcome. Needs wrk (scripts/deps.sh installs it).

The binary is the release build (build/release/weir, which `make test` builds; or
$WEIR_CHAOS_BIN): the rate matters. Before issue 10's fix, weir's retries were budgeted per
request and the budget's reserve covered the requests that reached a dead server before the
health check saw it at the few thousand requests per second of the ASan build, but not at the
tens of thousands of a release build (0.3 % failed there, 1 run in 7 failed under ASan). The
retry paths themselves run under ASan in test_faults and test_health."""

import os
import shutil
import sys
import unittest

from weirtest import WeirTestCase

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import chaos  # noqa: E402  (bench/chaos.py, standard library only)

DURATION = 20.0  # seconds of load: 7 kills, 4 reloads; ~23 s in all
SEED = 1
MAX_FAILURE_PCT = 0.02
# A release build serves 30-50 thousand requests per second here (2 cores shared with the
# servers and wrk): far below that, the run stalled.
MIN_REQUESTS = 100_000
CHAOS_BIN = os.path.abspath(os.environ.get("WEIR_CHAOS_BIN")
                            or os.path.join(ROOT, "build", "release", "weir"))


class ChaosTest(WeirTestCase):
    def test_server_kills_and_reloads_under_load_fail_at_most_0_02_percent(self):
        self.assertTrue(shutil.which("wrk"), "wrk is not installed: scripts/deps.sh installs it")
        self.assertTrue(os.access(CHAOS_BIN, os.X_OK),
                        f"no release binary at {CHAOS_BIN}: `make test` builds it (make release)")
        print(f"\nweir binary: {CHAOS_BIN}", flush=True)
        r = chaos.run("weir", CHAOS_BIN, workdir=os.path.join(self.tmp, "chaos"),
                      duration=DURATION, seed=SEED, pin=False, log_level="info",
                      logf=lambda msg: print(msg, flush=True))
        print("\n" + "\n".join(chaos.summary_lines({"results": {"weir": r}})), flush=True)
        log_tail = chaos.tail(os.path.join(self.tmp, "chaos", "weir.log"), 25)

        self.assertTrue(r["proxy_alive"], f"weir died during the chaos:\n{log_tail}")
        self.assertGreaterEqual(r["requests"], MIN_REQUESTS,
                                f"only {r['requests']} requests in {DURATION:g} s: the run "
                                f"stalled\n{log_tail}")
        # the chaos happened: each kill hit a running server, each restart came back
        self.assertGreaterEqual(r["kills"], 6)
        self.assertEqual(r["kills_died"], r["kills"],
                         [e for e in r["events"] if e["kind"] == "kill" and not e["died"]])
        self.assertEqual(r["restarts_ok"], r["restarts"],
                         [e for e in r["events"] if e["kind"] == "restart" and not e["ok"]])
        served = r["metrics"].get("server_requests_total") or {}
        self.assertEqual(sorted(served), ["s1", "s2", "s3", "s4"], r["metrics"])
        self.assertTrue(all(v > 0 for v in served.values()), served)
        not_back = [x for x in r["rotation"] if not x["requests_until_next_kill"]]
        self.assertEqual(not_back, [], "restarted servers that weir sent no request to before "
                                       "their next kill (or the end)")
        self.assertGreaterEqual(r["reloads"], 4)
        self.assertEqual(r["reloads_applied"], r["reloads"], f"reloads not applied:\n{log_tail}")
        # the verdict
        self.assertLessEqual(
            r["failure_pct"], MAX_FAILURE_PCT,
            f"{r['failures']} failures in {r['requests']} requests "
            f"({r['failure_pct']:.4f} % > {MAX_FAILURE_PCT} %): non-2xx/3xx {r['non2xx3xx']}, "
            f"socket errors {r['socket_errors']}; weir's codes "
            f"{r['metrics'].get('requests_total_by_code')}; by time since the last kill "
            f"{r['attribution']['by_time_since_kill']}")


if __name__ == "__main__":
    unittest.main()
