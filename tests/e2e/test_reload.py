"""SIGHUP reload: under load with no failed request; a bad config keeps the old one."""

import collections
import threading
import unittest

from weirtest import HttpConn, WeirTestCase, free_port, http_get, lb_config, wait_until


class ReloadTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.a = self.start_whoami("a")
        self.b = self.start_whoami("b")
        self.c = self.start_whoami("c")
        self.port, self.admin = free_port(), free_port()

    def config(self, servers, routes=None, workers=2):
        backends = [{"name": "web", "servers": servers},
                    {"name": "extra", "servers": [{"address": self.c.address, "name": "c"}]}]
        rts = (routes or []) + [{"backend": "web"}]
        return lb_config(self.port, [], routes=rts, backends=backends, admin_port=self.admin,
                         workers=workers)

    def test_reload_under_load_no_failed_request(self):
        a = {"address": self.a.address, "name": "a"}
        b = {"address": self.b.address, "name": "b"}
        lb = self.start_weir(self.config([a]))
        stop = threading.Event()
        results = collections.Counter()
        failures = []
        lock = threading.Lock()

        def client(i):
            conn = None
            n = 0
            while not stop.is_set():
                try:
                    if conn is None:
                        conn = HttpConn(self.port, timeout=10)
                    r = conn.get(f"/load/{i}/{n}")
                    n += 1
                    with lock:
                        results[(r.status, r.whoami_name())] += 1
                    if r.status != 200:
                        with lock:
                            failures.append((r.status, r.text[:100]))
                    if (r.header("Connection") or "").lower() == "close":
                        conn.close()
                        conn = None
                except Exception as e:  # noqa: BLE001
                    with lock:
                        failures.append(repr(e))
                    if conn:
                        conn.close()
                    conn = None
            if conn:
                conn.close()

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        steps = [
            self.config([dict(a, weight=3), b]),
            self.config([a, dict(b, weight=2)]),
            self.config([a, b], routes=[{"match": {"path_prefix": "/new/"}, "backend": "extra"}]),
            self.config([b]),
            self.config([a, b], routes=[{"match": {"path_prefix": "/new/"}, "backend": "extra"}]),
        ]
        def served():
            with lock:
                return sum(results.values()) + len(failures)

        def traffic(what):
            # Load runs under each config: at least 20 more answers before going on.
            want = served() + 20
            wait_until(lambda: served() >= want, 10, what=f"20 requests {what}")

        try:
            for i, cfg in enumerate(steps):
                traffic(f"before reload {i + 1}")
                self.assertTrue(lb.reload(cfg), lb.proc.stderr()[-2000:])
            traffic("after the last reload")
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        self.assertFalse(any(t.is_alive() for t in threads), "client threads stuck")
        print(f"\nrequests during reloads: {dict(results)}")
        self.assertEqual(failures, [])
        self.assertGreater(sum(results.values()), 50)
        self.assertTrue(lb.proc.alive())
        # The route added by the last reload works; others still go to web.
        self.assertWhoami(http_get(self.port, "/new/x"), "c")
        names = {http_get(self.port, "/old").whoami_name() for _ in range(6)}
        self.assertEqual(names, {"a", "b"})

    def test_reload_changes_weights(self):
        a = {"address": self.a.address, "name": "a"}
        b = {"address": self.b.address, "name": "b"}
        lb = self.start_weir(self.config([a, b], workers=1))
        self.assertTrue(lb.reload(self.config([dict(a, weight=0), b], workers=1)))
        with HttpConn(self.port) as c:
            self.assertEqual({c.get("/").whoami_name() for _ in range(10)}, {"b"})
        bs = lb.backends()
        self.assertEqual([s["weight"] for s in bs["backends"][0]["servers"]], [0, 1])

    def test_bad_config_on_sighup_keeps_old(self):
        a = {"address": self.a.address, "name": "a"}
        lb = self.start_weir(self.config([a]))
        self.assertWhoami(http_get(self.port, "/"), "a")
        lb.write_config("workers: 1\nlisteners: [\nthis is: not valid yaml\n")
        self.assertFalse(lb.reload())
        self.assertIn("keeping the running config", lb.proc.stderr())
        self.assertWhoami(http_get(self.port, "/"), "a")
        # A config that parses but references a missing backend.
        bad = self.config([a])
        bad["listeners"][0]["routes"] = [{"backend": "nope"}]
        self.assertFalse(lb.reload(bad))
        self.assertRegex(lb.proc.stderr(), r"nope")
        self.assertWhoami(http_get(self.port, "/"), "a")
        # Changing a listen address needs a restart: refused, old config kept.
        moved = self.config([{"address": self.b.address, "name": "b"}])
        moved["listeners"][0]["listen"] = f"127.0.0.1:{free_port()}"
        self.assertFalse(lb.reload(moved))
        self.assertWhoami(http_get(self.port, "/"), "a")
        # And a good config afterwards applies.
        self.assertTrue(lb.reload(self.config([{"address": self.b.address, "name": "b"}])))
        self.assertWhoami(http_get(self.port, "/"), "b")
        self.assertTrue(lb.proc.alive())

    def test_in_flight_request_survives_reload(self):
        a = {"address": self.a.address, "name": "a"}
        b = {"address": self.b.address, "name": "b"}
        lb = self.start_weir(self.config([a]))
        with HttpConn(self.port) as c:
            c.send(b"GET /?delay=1s HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(lambda: lb.server("web", "a")["active_requests"] == 1, 10,
                       what="the request in flight")
            self.assertTrue(lb.reload(self.config([b])))
            r = c.read_response()
            self.assertWhoami(r, "a")
            # The next request on the same connection uses the new config.
            self.assertWhoami(c.get("/"), "b")


if __name__ == "__main__":
    unittest.main()
