"""Health: active http/tcp checks both ways (log, metrics, API, traffic), expect_status, all
servers down -> 503 at once, a server killed under load with zero failed requests, passive
ejection and its limit."""

import collections
import re
import threading
import time
import unittest

from weirtest import (HttpConn, WeirTestCase, free_port, http_get, read_request_head, set_whoami_health,
                      wait_until)

FAST_HTTP_CHECK = {"type": "http", "path": "/healthz", "interval": "200ms", "timeout": "200ms",
                   "rise": 2, "fall": 3}


class ActiveHealthTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.a = self.start_whoami("a")
        self.b = self.start_whoami("b")

    def lb_with(self, check, **extra):
        be = {"health_check": check}
        be.update(extra)
        return self.start_lb([{"address": self.a.address, "name": "a"},
                              {"address": self.b.address, "name": "b"}], backend_extra=be)

    def names(self, port, n):
        with HttpConn(port) as c:
            out = []
            for i in range(n):
                r = c.get(f"/n{i}")
                self.assertWhoami(r)
                out.append(r.whoami_name())
            return out

    def test_http_check_down_after_fall_and_up_after_rise(self):
        lb = self.lb_with(FAST_HTTP_CHECK)
        self.assertEqual(lb.metrics().get("weir_server_up", backend="web", server="b"), 1)
        self.assertEqual(set(self.names(lb.port, 4)), {"a", "b"})
        set_whoami_health(self.b, 503)
        log = lb.proc.wait_log(r"server web/b DOWN: 3 consecutive failures: status 503", timeout=10)
        # Only b went down, once.
        self.assertEqual(len(re.findall(r"server web/\w+ DOWN", log)), 1, log)
        m = lb.metrics()
        self.assertEqual(m.get("weir_server_up", backend="web", server="b"), 0)
        self.assertEqual(m.get("weir_server_up", backend="web", server="a"), 1)
        self.assertIs(lb.server("web", "b")["healthy"], False)
        self.assertIs(lb.server("web", "a")["healthy"], True)
        # No request goes to b meanwhile.
        before_b = lb.server("web", "b")["requests_total"]
        self.assertEqual(self.names(lb.port, 20), ["a"] * 20)
        self.assertEqual(lb.server("web", "b")["requests_total"], before_b)
        # Back up after rise passes.
        set_whoami_health(self.b, 200)
        lb.proc.wait_log(r"server web/b UP: 2 consecutive passes", timeout=10)
        self.assertEqual(lb.metrics().get("weir_server_up", backend="web", server="b"), 1)
        self.assertIs(lb.server("web", "b")["healthy"], True)
        self.assertEqual(set(self.names(lb.port, 6)), {"a", "b"})

    def test_single_failure_below_fall_keeps_server_up(self):
        lb = self.lb_with({"type": "http", "path": "/healthz", "interval": "300ms", "timeout": "300ms",
                           "rise": 1, "fall": 1000})
        set_whoami_health(self.b, 500)
        time.sleep(1.5)  # several failing probes, far fewer than fall
        self.assertIs(lb.server("web", "b")["healthy"], True)
        self.assertNotIn("web/b DOWN", lb.proc.stderr())
        self.assertEqual(set(self.names(lb.port, 4)), {"a", "b"})

    def test_expect_status(self):
        # 204 is healthy under the default range, not under expect_status "200".
        set_whoami_health(self.b, 204)
        check = dict(FAST_HTTP_CHECK, expect_status="200", fall=1, rise=1)
        lb = self.lb_with(check)
        lb.proc.wait_log(r"server web/b DOWN: 1 consecutive failure: status 204", timeout=10)
        self.assertIs(lb.server("web", "a")["healthy"], True)
        self.assertEqual(self.names(lb.port, 6), ["a"] * 6)

    def test_default_expect_status_accepts_3xx(self):
        set_whoami_health(self.b, 302)
        lb = self.lb_with(dict(FAST_HTTP_CHECK, fall=1, rise=1))
        time.sleep(1.0)
        self.assertIs(lb.server("web", "b")["healthy"], True)
        self.assertNotIn("DOWN", lb.proc.stderr())

    def test_checks_use_path(self):
        lb = self.lb_with(dict(FAST_HTTP_CHECK, path="/healthz", fall=1, rise=1))
        set_whoami_health(self.a, 503)
        lb.proc.wait_log(r"server web/a DOWN", timeout=10)
        self.assertEqual(self.names(lb.port, 4), ["b"] * 4)

    def test_tcp_check_marks_killed_server_down_and_restarted_up(self):
        lb = self.lb_with({"type": "tcp", "interval": "200ms", "timeout": "200ms", "rise": 1, "fall": 2})
        port = self.b.port
        self.b.proc.stop()
        lb.proc.wait_log(r"server web/b DOWN: 2 consecutive failures: connection refused", timeout=10)
        self.assertEqual(lb.metrics().get("weir_server_up", backend="web", server="b"), 0)
        self.assertIs(lb.server("web", "b")["healthy"], False)
        self.assertEqual(self.names(lb.port, 10), ["a"] * 10)
        # A new process on the same port: up again.
        self.start_whoami("b", port=port)
        lb.proc.wait_log(r"server web/b UP: 1 consecutive pass", timeout=10)
        self.assertIs(lb.server("web", "b")["healthy"], True)
        self.assertIn("b", self.names(lb.port, 4))

    def test_one_probe_per_server_per_process(self):
        # Four workers, one probe stream per server: over ~2 s at 200 ms that is ~10 probes.
        w = self.start_whoami("count")
        seen = []
        lock = threading.Lock()

        def probe_counter(c):
            while True:
                head = read_request_head(c)
                if not head:
                    return
                with lock:
                    seen.append(time.monotonic())
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

        srv = self.start_server(probe_counter)
        lb = self.start_lb([{"address": w.address, "name": "w"}, {"address": srv.address, "name": "py"}],
                           workers=4, backend_extra={"health_check": dict(FAST_HTTP_CHECK)})
        with lock:
            seen.clear()
        time.sleep(2.0)
        with lock:
            n = len(seen)
        self.assertGreaterEqual(n, 3, "no health probes reached the server")
        self.assertLessEqual(n, 16, f"{n} probes in 2 s at a 200 ms interval: one per worker?")
        self.assertTrue(lb.proc.alive())


class AllDownTest(WeirTestCase):
    def test_all_servers_down_503_at_once(self):
        a = self.start_whoami("a")
        b = self.start_whoami("b")
        lb = self.start_lb([{"address": a.address, "name": "a"}, {"address": b.address, "name": "b"}],
                           backend_extra={"health_check": dict(FAST_HTTP_CHECK, fall=1)})
        set_whoami_health(a, 503)
        set_whoami_health(b, 503)
        lb.proc.wait_log(r"server web/a DOWN", timeout=10)
        lb.proc.wait_log(r"server web/b DOWN", timeout=10)
        before = lb.server("web", "a")["requests_total"] + lb.server("web", "b")["requests_total"]
        with HttpConn(lb.port, timeout=5) as c:
            for _ in range(3):
                t0 = time.monotonic()
                r = c.get("/")
                took = time.monotonic() - t0
                self.assertEqual(r.status, 503)
                self.assertEqual(r.header("Retry-After"), "1")
                self.assertLess(len(r.body), 200)
                self.assertNotIn(b"127.0.0.1", r.body)
                self.assertLess(took, 2.0, "503 not at once")
        after = lb.server("web", "a")["requests_total"] + lb.server("web", "b")["requests_total"]
        self.assertEqual(after, before)
        self.assertGreaterEqual(lb.metrics().get("weir_requests_total", backend="web", code="503"), 3)
        # One comes back: served again.
        set_whoami_health(a, 200)
        lb.proc.wait_log(r"server web/a UP", timeout=10)
        self.assertWhoami(http_get(lb.port, "/"), "a")

    def test_all_killed_503_with_retry_after(self):
        a = self.start_whoami("a")
        lb = self.start_lb([{"address": a.address, "name": "a"}],
                           backend_extra={"health_check": {"type": "tcp", "interval": "200ms",
                                                           "timeout": "200ms", "rise": 1, "fall": 1}})
        a.proc.stop()
        lb.proc.wait_log(r"server web/a DOWN", timeout=10)
        r = http_get(lb.port, "/", timeout=5)
        self.assertEqual(r.status, 503)
        self.assertEqual(r.header("Retry-After"), "1")


class KilledUnderLoadTest(WeirTestCase):
    def test_server_killed_under_load_zero_failures(self):
        ws = [self.start_whoami(n) for n in ("a", "b", "c")]
        lb = self.start_lb([{"address": w.address, "name": w.name} for w in ws], workers=2,
                           backend_extra={"retries": 2,
                                          "passive": {"failures": 2, "cooldown": "5s"},
                                          "health_check": {"type": "tcp", "interval": "500ms",
                                                           "timeout": "300ms", "rise": 2, "fall": 2}})
        stop = threading.Event()
        lock = threading.Lock()
        results = collections.Counter()
        failures = []

        def client(i):
            deadline = time.monotonic() + 25
            n = 0
            while not stop.is_set() and time.monotonic() < deadline and n < 2000:
                try:
                    with HttpConn(lb.port, timeout=10) as c:
                        for _ in range(20):
                            if stop.is_set():
                                break
                            r = c.get(f"/load{i}/{n}")
                            n += 1
                            with lock:
                                if r.status == 200:
                                    results[r.whoami_name()] += 1
                                else:
                                    failures.append((r.status, r.text[:100]))
                except Exception as e:  # noqa: BLE001
                    with lock:
                        failures.append(repr(e))

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(6)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: sum(results.values()) >= 150, 20, what="load to get going")
            ws[1].proc.stop(sig=9)
            killed_at = sum(results.values())
            wait_until(lambda: sum(results.values()) >= killed_at + 300, 20, what="load after the kill")
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        self.assertFalse(any(t.is_alive() for t in threads))
        print(f"\nkilled under load: {dict(results)}, failures {len(failures)}")
        self.assertEqual(failures, [])
        self.assertGreater(results["a"], 0)
        self.assertGreater(results["c"], 0)
        lb.proc.wait_log(r"server web/b (DOWN|ejected)", timeout=10)
        self.assertIs(lb.server("web", "b")["healthy"], False)

    def test_in_flight_request_on_killed_server_is_retried(self):
        # The server dies after reading the request and before any response byte: a GET is
        # retried on the other server.
        b = self.start_whoami("b")
        a = self.start_whoami("a")
        lb = self.start_lb([{"address": b.address, "name": "b"}, {"address": a.address, "name": "a"}],
                           backend_extra={"retries": 2})
        with HttpConn(lb.port, timeout=15) as c:
            c.send(b"GET /?delay=1s HTTP/1.1\r\nHost: example.test\r\n\r\n")
            wait_until(lambda: lb.server("web", "b")["active_requests"] == 1, 5, what="request in flight on b")
            b.proc.stop(sig=9)
            r = c.read_response()
            self.assertWhoami(r, "a")
            # The connection still works.
            self.assertWhoami(c.get("/next"), "a")


class PassiveTest(WeirTestCase):
    def test_dead_server_ejected_by_live_traffic(self):
        live = self.start_whoami("live")
        dead = free_port()
        lb = self.start_lb([{"address": f"127.0.0.1:{dead}", "name": "dead"},
                            {"address": live.address, "name": "live"}],
                           backend_extra={"retries": 2,
                                          "passive": {"failures": 2, "cooldown": "2s"}})
        with HttpConn(lb.port) as c:
            for i in range(10):
                self.assertWhoami(c.get(f"/p{i}"), "live")
        log = lb.proc.wait_log(
            r"server web/dead ejected for 2000 ms: 2 consecutive failures \(connection refused\)", timeout=5)
        self.assertEqual(len(re.findall(r"web/dead ejected", log)), 1, log)
        self.assertIs(lb.server("web", "dead")["healthy"], False)
        self.assertIs(lb.server("web", "live")["healthy"], True)
        self.assertEqual(lb.metrics().get("weir_server_up", backend="web", server="dead"), 0)
        self.assertNotIn(str(dead), log.split("ejected", 1)[1].split("\n", 1)[0])
        # After the cooldown it is tried again, fails again and is ejected for longer.
        time.sleep(2.3)
        with HttpConn(lb.port) as c:
            for i in range(10):
                self.assertWhoami(c.get(f"/q{i}"), "live")
        lb.proc.wait_log(r"server web/dead ejected for 4000 ms", timeout=5)

    def test_5xx_responses_eject(self):
        good = self.start_whoami("good")

        def always_500(c):
            while read_request_head(c):
                c.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom")

        bad = self.start_server(always_500)
        lb = self.start_lb([{"address": bad.address, "name": "bad"}, {"address": good.address, "name": "good"}],
                           backend_extra={"passive": {"failures": 3, "cooldown": "10s"}})
        statuses = []
        with HttpConn(lb.port) as c:
            for i in range(20):
                statuses.append(c.get(f"/x{i}").status)
        # Round robin: three 500s reach the client before bad is ejected, then only good answers.
        self.assertEqual(statuses.count(500), 3, statuses)
        self.assertEqual(statuses[-10:], [200] * 10)
        lb.proc.wait_log(r"server web/bad ejected for 10000 ms: 3 consecutive failures", timeout=5)
        self.assertIs(lb.server("web", "bad")["healthy"], False)

    def test_max_ejected_percent(self):
        live = self.start_whoami("live")
        deads = [free_port() for _ in range(3)]
        servers = [{"address": f"127.0.0.1:{p}", "name": f"dead{i}"} for i, p in enumerate(deads)]
        servers.append({"address": live.address, "name": "live"})
        lb = self.start_lb(servers, backend_extra={"retries": 3,
                                                   "passive": {"failures": 1, "cooldown": "10s",
                                                               "max_ejected_percent": 50}})
        with HttpConn(lb.port) as c:
            for i in range(30):
                r = c.get(f"/m{i}")
                self.assertIn(r.status, (200, 502), r)
        servers = lb.backends()["backends"][0]["servers"]
        unhealthy = [s["name"] for s in servers if not s["healthy"]]
        self.assertEqual(len(unhealthy), 2, servers)
        self.assertNotIn("live", unhealthy)
        self.assertEqual(len(re.findall(r"ejected for", lb.proc.stderr())), 2)


if __name__ == "__main__":
    unittest.main()
