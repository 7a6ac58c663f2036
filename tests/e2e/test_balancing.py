"""Balancing: smooth weighted round robin, weight 0, weighted random."""

import collections
import unittest

from weirtest import HttpConn, WeirTestCase, http_get


class RoundRobinTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.a = self.start_whoami("a")
        self.b = self.start_whoami("b")

    def names(self, port, n, per_connection=False):
        out = []
        if per_connection:
            for _ in range(n):
                r = http_get(port, "/")
                self.assertWhoami(r)
                out.append(r.whoami_name())
            return out
        with HttpConn(port) as c:
            for _ in range(n):
                r = c.get("/")
                self.assertWhoami(r)
                out.append(r.whoami_name())
        return out

    def test_weights_3_1_smooth_sequence(self):
        lb = self.start_lb([{"address": self.a.address, "weight": 3, "name": "a"},
                            {"address": self.b.address, "weight": 1, "name": "b"}],
                           backend_extra={"balance": "round_robin"})
        seq = self.names(lb.port, 40)
        self.assertEqual(seq, ["a", "a", "b", "a"] * 10)
        self.assertEqual(collections.Counter(seq), {"a": 30, "b": 10})
        self.assertNotIn("b,b", ",".join(seq))
        # The admin API counts the same split.
        self.assertEqual(lb.server("web", "a")["requests_total"], 30)
        self.assertEqual(lb.server("web", "b")["requests_total"], 10)
        m = lb.metrics()
        self.assertEqual(m.get("weir_requests_total", listener="web", backend="web", code="200"), 40)

    def test_sequence_continues_across_connections(self):
        # One worker: the balancer state is shared by every client connection.
        lb = self.start_lb([{"address": self.a.address, "weight": 3, "name": "a"},
                            {"address": self.b.address, "weight": 1, "name": "b"}])
        seq = self.names(lb.port, 12, per_connection=True)
        self.assertEqual(seq, ["a", "a", "b", "a"] * 3)

    def test_equal_weights_alternate(self):
        lb = self.start_lb([{"address": self.a.address, "name": "a"},
                            {"address": self.b.address, "name": "b"}])
        seq = self.names(lb.port, 10)
        self.assertEqual(seq, ["a", "b"] * 5)

    def test_weight_zero_gets_nothing(self):
        lb = self.start_lb([{"address": self.a.address, "weight": 1, "name": "a"},
                            {"address": self.b.address, "weight": 0, "name": "b"}])
        seq = self.names(lb.port, 20)
        self.assertEqual(seq, ["a"] * 20)
        self.assertEqual(lb.server("web", "b")["requests_total"], 0)
        self.assertEqual(lb.server("web", "b")["weight"], 0)

    def test_default_server_names_and_weights_in_admin(self):
        lb = self.start_lb([self.a.port, {"address": self.b.address, "weight": 5}])
        bs = lb.backends()
        self.assertEqual(len(bs["backends"]), 1)
        servers = bs["backends"][0]["servers"]
        self.assertEqual([s["name"] for s in servers], ["web-1", "web-2"])
        self.assertEqual([s["address"] for s in servers], [self.a.address, self.b.address])
        self.assertEqual([s["weight"] for s in servers], [1, 5])
        for s in servers:
            self.assertIs(s["healthy"], True)
            self.assertEqual(s["active_requests"], 0)
            self.assertEqual(s["requests_total"], 0)


class RandomTest(WeirTestCase):
    def test_random_respects_weights(self):
        a = self.start_whoami("a")
        b = self.start_whoami("b")
        lb = self.start_lb([{"address": a.address, "weight": 3, "name": "a"},
                            {"address": b.address, "weight": 1, "name": "b"}],
                           backend_extra={"balance": "random"})
        n = 2000
        counts = collections.Counter()
        seq = []
        with HttpConn(lb.port) as c:
            for _ in range(n):
                r = c.get("/")
                self.assertWhoami(r)
                counts[r.whoami_name()] += 1
                seq.append(r.whoami_name())
        # Expected 1500 a; the standard deviation is ~19.4, so +-120 is over 6 sigma.
        print(f"\nrandom 3:1 over {n}: {dict(counts)}")
        self.assertEqual(counts["a"] + counts["b"], n)
        self.assertGreater(counts["a"], 1380)
        self.assertLess(counts["a"], 1620)
        # Random, not a fixed rotation: the smooth round-robin pattern does not appear throughout.
        self.assertNotEqual(seq[:40], ["a", "a", "b", "a"] * 10)
        self.assertEqual(lb.server("web", "a")["requests_total"], counts["a"])
        self.assertEqual(lb.server("web", "b")["requests_total"], counts["b"])


if __name__ == "__main__":
    unittest.main()
