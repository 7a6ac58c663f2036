"""client_limits shared across weir instances through Redis (fleet.md, `cluster:`).

Two weir instances and one Redis (started here on an ephemeral loopback port): a client that
alternates its requests over both gets the shared rate -- within what each instance may pass
blind between two syncs (burst + rate x sync_interval) -- where unshared instances pass the rate
each. Redis killed: every request is still answered (200 or the local 429), weir_cluster_up 0 and
one warning; Redis restarted on the same port: weir_cluster_up 1 and shared again. `weir check`
never connects. The measured figures are printed.

max_connections shared (all clients are 127.0.0.1, one key): 4 connections held open on A make B
refuse (429 before the request, as over max_connections on one instance); closing 2 at A lets B
accept 2 and no more; Redis killed, each instance admits up to its own limit on its own counts;
once every connection is closed no key of the test's prefix is left in Redis.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
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

    def start_pair(self, shared: bool, limits: dict | None = None):
        weirs = []
        if limits is None:
            limits = {"rate": f"{RATE}/s", "burst": BURST}
        for _ in range(2):
            cfg = lb_config(free_port(), [self.backend.port], admin_port=free_port(),
                            listener_extra={"client_limits": dict(limits, shared=shared)},
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

    def open_held(self, w) -> HttpConn | None:
        """A keep-alive connection to `w` that got a 200 for GET / (kept open), or None if weir
        refused it the way it refuses a client over max_connections: a 429 with Retry-After
        before the client sent anything, then closed."""
        c = HttpConn(w.port, timeout=5.0)
        try:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_response()
        except Exception:
            c.close()
            raise
        if r.status == 200:
            return c
        self.assertEqual(r.status, 429, r)
        self.assertGreaterEqual(int(r.header("retry-after")), 1)
        self.assertTrue(c.is_closed())
        c.close()
        return None

    def probe(self, w) -> int:
        """200 if `w` admits one more connection (closed again at once), 429 if it refuses."""
        c = self.open_held(w)
        if c is None:
            return 429
        c.close()
        return 200

    def hold(self, w, n: int) -> list:
        """n connections to `w`, each admitted (200) and kept open."""
        held = []
        for i in range(n):
            c = self.open_held(w)
            self.assertIsNotNone(c, f"connection {i + 1} of {n} to :{w.port} refused")
            held.append(c)
        return held

    def test_two_instances_share_max_connections(self):
        # Every client is 127.0.0.1: one key for the whole test.
        a, b = self.start_pair(shared=True, limits={"max_connections": 4})
        settle = 5 * SYNC_S  # a few sync intervals for a count to reach the other instance
        held_a = self.hold(a, 4)
        held_b = []
        try:
            time.sleep(settle)
            # B never had a connection of this key: it knows of it as one of the fleet's full
            # keys, and refuses at once.
            first = self.probe(b)
            print(f"\nmax_connections 4, 4 held at A: B's first connection answered {first}")
            wait_until(lambda: self.probe(b) == 429, 5, settle, "B refuses: 4 at A")
            time.sleep(settle)
            self.assertEqual(self.probe(b), 429)
            self.assertEqual(self.probe(a), 429)
            self.assertGreaterEqual(
                b.metrics().get("weir_refused_total", listener="web", reason="connections"), 2)

            # A closes 2: once it has published, B accepts 2 (2 at A) and no more.
            for c in held_a[:2]:
                c.close()
            held_a = held_a[2:]
            time.sleep(settle)
            wait_until(lambda: self.probe(b) == 200, 5, settle, "B accepts again")
            time.sleep(settle)  # B's probe published and withdrawn again
            held_b = self.hold(b, 2)
            self.assertIsNone(self.open_held(b))  # 2 + 2
            time.sleep(settle)
            self.assertIsNone(self.open_held(a))  # A knows of B's 2 by now

            # Redis killed: each instance limits on its own counts (2 each, so 2 more each).
            self.redis.stop(signal.SIGKILL)
            for w in (a, b):
                wait_until(lambda w=w: w.metrics().get("weir_cluster_up") == 0, 10, 0.05,
                           "weir_cluster_up 0")
            time.sleep(settle)
            held_b += self.hold(b, 2)
            self.assertIsNone(self.open_held(b))  # 4 here: its own limit
            held_a += self.hold(a, 2)
            self.assertIsNone(self.open_held(a))
            for w in (a, b):
                self.assertEqual(len(w.proc.stderr().split("unreachable")) - 1, 1,
                                 w.proc.stderr())
        finally:
            for c in held_a + held_b:
                c.close()

    def redis_keys(self) -> list:
        """This test's keys in Redis (KEYS prefix*, over a raw RESP connection)."""
        pattern = (self.prefix + "*").encode()
        with socket.create_connection((HOST, self.redis_port), timeout=5) as s:
            s.sendall(b"*2\r\n$4\r\nKEYS\r\n$%d\r\n%s\r\n" % (len(pattern), pattern))
            f = s.makefile("rb")
            head = f.readline()
            self.assertTrue(head.startswith(b"*"), head)
            keys = []
            for _ in range(int(head[1:])):
                n = int(f.readline()[1:])
                keys.append(f.read(n + 2)[:-2].decode())
            return sorted(keys)

    def test_shared_connections_leave_nothing_in_redis(self):
        a, b = self.start_pair(shared=True, limits={"max_connections": 4})
        held = self.hold(a, 4)
        try:
            time.sleep(5 * SYNC_S)
            keys = self.redis_keys()
            # One hash for the address (A's count), the listener's set of full keys.
            self.assertEqual([k[len(self.prefix):][:3] for k in keys], ["cf:", "cn:"], keys)
        finally:
            for c in held:
                c.close()
        wait_until(lambda: self.redis_keys() == [], 5, SYNC_S, "no key left in Redis")
        self.assertEqual(self.probe(b), 200)

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
