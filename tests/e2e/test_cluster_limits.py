"""client_limits shared across weir instances through Redis (fleet.md, `cluster:`).

Two weir instances and one Redis (started here on an ephemeral loopback port): a client that
alternates its requests over both gets the shared rate -- within what each instance may pass
blind between two syncs (burst + rate x sync_interval) -- where unshared instances pass the rate
each. Redis killed: every request is still answered (200 or the local 429), weir_cluster_up 0 and
one warning; Redis restarted on the same port: weir_cluster_up 1 and shared again. `weir check`
never connects. The measured figures are printed.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import time
import unittest

from weirtest import (HOST, HttpConn, WeirTestCase, free_port, lb_config, require, wait_port,
                      wait_until)

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
RATE, BURST = 20, 20
SYNC_S = 0.1
# What one instance may pass without knowing the others' requests (fleet.md's bound).
BLIND = BURST + RATE * SYNC_S


class ClusterLimits(WeirTestCase):
    def setUp(self):
        super().setUp()
        require(os.access(REDIS, os.X_OK), "redis-server is not installed", self)
        self.redis_port = free_port()
        self.redis = self.start_redis()
        self.backend = self.start_whoami()
        self.prefix = f"t{os.getpid()}.{self.redis_port}."  # (a trailing ":" needs quotes)

    def start_redis(self):
        p = self.spawn([REDIS, "--port", str(self.redis_port), "--bind", HOST, "--save", "",
                        "--appendonly", "no"], "redis")
        wait_port(self.redis_port, p)
        return p

    def start_pair(self, shared: bool):
        weirs = []
        for _ in range(2):
            cfg = lb_config(free_port(), [self.backend.port], admin_port=free_port(),
                            listener_extra={"client_limits": {"rate": f"{RATE}/s", "burst": BURST,
                                                              "shared": shared}},
                            top_extra={"cluster": {"redis": f"{HOST}:{self.redis_port}",
                                                   "prefix": self.prefix,
                                                   "sync_interval": f"{int(SYNC_S * 1000)}ms"}})
            weirs.append(self.start_weir(cfg))
        for w in weirs:
            wait_until(lambda w=w: w.metrics().get("weir_cluster_up") == 1, 10, 0.05,
                       "weir_cluster_up 1")
        return weirs

    def hammer(self, weirs, seconds: float, per_second: float = 100.0):
        """Alternates GET / over the instances at per_second (well above RATE) for `seconds`;
        returns ({port: Counter(status)}, the window in seconds). Keep-alive connections;
        every answer must be a 200 or a 429."""
        conns = {w.port: HttpConn(w.port, timeout=5.0) for w in weirs}
        counts = {w.port: collections.Counter() for w in weirs}
        start = time.monotonic()
        i = 0
        last = start
        try:
            while time.monotonic() - start < seconds:
                w = weirs[i % len(weirs)]
                i += 1
                try:
                    r = conns[w.port].get("/")
                except (OSError, Exception):  # a closed keep-alive connection: reconnect once
                    conns[w.port].close()
                    conns[w.port] = HttpConn(w.port, timeout=5.0)
                    r = conns[w.port].get("/")
                self.assertIn(r.status, (200, 429), r)
                counts[w.port][r.status] += 1
                last = time.monotonic()
                delay = start + i / per_second - last
                if delay > 0:
                    time.sleep(delay)
        finally:
            for c in conns.values():
                c.close()
        return counts, last - start

    def allowed(self, counts) -> int:
        return sum(c[200] for c in counts.values())

    def report(self, what, counts, window, ideal):
        per = " + ".join(str(c[200]) for c in counts.values())
        sent = sum(sum(c.values()) for c in counts.values())
        total = self.allowed(counts)
        print(f"\n{what}: {per} = {total} allowed of {sent} sent over {window:.2f}s; "
              f"ideal (rate x window + burst) {ideal:.1f}, ratio {total / ideal:.3f}, "
              f"bound +{2 * BLIND:.0f}")

    def test_two_instances_share_the_rate_and_survive_redis(self):
        weirs = self.start_pair(shared=True)
        counts, window = self.hammer(weirs, 4.0)
        ideal = RATE * window + BURST
        self.report("shared, 2 instances", counts, window, ideal)
        total = self.allowed(counts)
        # At most: the ideal plus what each instance passes blind; at least most of the rate
        # (a loaded machine only makes the instances sync late, which lets more through).
        self.assertLessEqual(total, ideal + 2 * BLIND, counts)
        self.assertGreaterEqual(total, 0.8 * RATE * window, counts)
        for c in counts.values():
            self.assertGreater(c[200], 0, counts)  # both instances served

        # Redis killed: still answered, limited locally, one warning, weir_cluster_up 0.
        self.redis.stop(signal.SIGKILL)
        for w in weirs:
            wait_until(lambda w=w: w.metrics().get("weir_cluster_up") == 0, 10, 0.05,
                       "weir_cluster_up 0")
        counts, window = self.hammer(weirs, 3.0)
        ideal = RATE * window + BURST
        self.report("Redis down (local limits)", counts, window, ideal)
        for c in counts.values():
            # Each instance on its own: no more than its own bucket allows, and it serves.
            self.assertLessEqual(c[200], RATE * window + BURST + 1, counts)
            self.assertGreater(c[200], 0, counts)
        for w in weirs:
            self.assertEqual(len(w.proc.stderr().split("unreachable")) - 1, 1, w.proc.stderr())
            self.assertIn("WARN", [line for line in w.proc.stderr().splitlines()
                                   if "unreachable" in line][0])

        # Redis restarted on the same port: shared again.
        self.redis = self.start_redis()
        for w in weirs:
            wait_until(lambda w=w: w.metrics().get("weir_cluster_up") == 1, 15, 0.05,
                       "weir_cluster_up 1 after the restart")
            w.proc.wait_log(r"reachable again", 1, 5)
        time.sleep(1.5)  # let the local buckets' state from the outage refill
        counts, window = self.hammer(weirs, 4.0)
        ideal = RATE * window + BURST
        self.report("shared again after the restart", counts, window, ideal)
        total = self.allowed(counts)
        self.assertLessEqual(total, ideal + 2 * BLIND, counts)
        self.assertGreaterEqual(total, 0.8 * RATE * window, counts)
        for w in weirs:
            self.assertEqual(len(w.proc.stderr().split("unreachable")) - 1, 1)

    def test_unshared_instances_pass_the_rate_each(self):
        weirs = self.start_pair(shared=False)
        counts, window = self.hammer(weirs, 4.0)
        ideal = RATE * window + BURST
        self.report("not shared, 2 instances", counts, window, ideal)
        total = self.allowed(counts)
        self.assertGreater(total, 1.6 * ideal, counts)  # about double
        self.assertLessEqual(total, 2 * ideal + 2, counts)

    def test_check_does_not_connect(self):
        # A Redis address nobody answers (this test's Redis stopped): check is quick and clean.
        self.redis.stop()
        cfg = lb_config(free_port(), [self.backend.port],
                        listener_extra={"client_limits": {"rate": "5/s", "shared": True}},
                        top_extra={"cluster": {"redis": f"{HOST}:{self.redis_port}"}})
        started = time.monotonic()
        p = self.run_weir("check", "-c", self.write_config(cfg))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertLess(time.monotonic() - started, 20)
        self.assertNotIn(b"Redis", p.stderr)


if __name__ == "__main__":
    unittest.main()
