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
        failed = lb.server("web", "b")["probes_failed"]
        set_whoami_health(self.b, 500)
        # Several failing probes, far fewer than fall.
        wait_until(lambda: lb.server("web", "b")["probes_failed"] >= failed + 4, 10, what="4 failing probes of b")
        self.assertGreaterEqual(lb.metrics().get("weir_server_probe_results_total", backend="web", server="b",
                                                 result="fail"), failed + 4)
        self.assertIs(lb.server("web", "b")["healthy"], True)
        self.assertIs(lb.server("web", "b")["up"], True)
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
        # Probes answered 302 ran (one failure would have taken b down: fall 1).
        wait_until(lambda: lb.server("web", "b")["probes_passed"] >= 4, 10, what="4 probes of b")
        self.assertEqual(lb.server("web", "b")["probes_failed"], 0)
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
        # Four workers, one probe stream per server: 10 probes at a 200 ms interval take ~1.8 s
        # (one stream per worker would send them 4 times as fast).
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
        passed = lb.server("web", "py")["probes_passed"]
        t0 = time.monotonic()
        # At least 1.5 probes a second reach the server ...
        wait_until(lambda: len(seen) >= 10, 10 / 1.5, what="10 health probes at the server")
        took = time.monotonic() - t0
        # ... and at most 8 a second (1.6 per interval): 10 of them take at least 9/8 s.
        self.assertGreaterEqual(took, 9 / 8, f"10 probes in {took:.2f} s at a 200 ms interval: one per worker?")
        # weir counts each probe once: its counter grew by what the server saw, give or take
        # the probe in flight at each end.
        grown = lb.server("web", "py")["probes_passed"] - passed
        with lock:
            n = len(seen)
        self.assertLessEqual(abs(grown - n), 2, f"the server saw {n} probes, weir counted {grown}")
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


def always_500(c):
    while read_request_head(c):
        c.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom")


class UnreachableTest(WeirTestCase):
    """A refused connection takes the server out of every worker's picks at once, without any
    passive config, for 1 s doubled with each failure in a row; the request goes elsewhere
    without spending the retry budget."""

    def test_dead_server_costs_no_request(self):
        # The case: four servers, one dead, retries 2, no health check, 400 sequential
        # GETs (before: 11 of them got 502 once the retry budget ran out).
        lives = [self.start_whoami(f"live{i}") for i in range(3)]
        dead = free_port()
        servers = [{"address": f"127.0.0.1:{dead}", "name": "dead"}]
        servers += [{"address": w.address, "name": w.name} for w in lives]
        lb = self.start_lb(servers, workers=2, backend_extra={"retries": 2})
        statuses = collections.Counter()
        with HttpConn(lb.port) as c:
            for i in range(400):
                statuses[c.get(f"/r{i}").status] += 1
        self.assertEqual(statuses, {200: 400})
        dead_state = lb.server("web", "dead")
        # Tried once, then at most once per interval (1 s, 2 s, 4 s ... in a row): a handful of
        # tries for the whole run, each of them retried elsewhere.
        self.assertGreaterEqual(dead_state["connect_failures"], 1)
        self.assertLessEqual(dead_state["connect_failures"], 6, dead_state)
        m = lb.metrics()
        self.assertEqual(m.get("weir_retries_total", kind="unseen"), dead_state["connect_failures"])
        self.assertEqual(m.get("weir_retries_total", kind="resent"), 0)
        log = lb.proc.wait_log(r"server web/dead unreachable \(connection refused\): out of rotation for 1000 ms")
        self.assertNotIn(str(dead), log)  # the log names servers, never their addresses

    def test_interval_grows_and_a_connect_ends_it(self):
        live = self.start_whoami("live")
        dead = free_port()
        lb = self.start_lb([{"address": f"127.0.0.1:{dead}", "name": "dead"},
                            {"address": live.address, "name": "live"}], backend_extra={"retries": 2})
        with HttpConn(lb.port) as c:
            self.assertWhoami(c.get("/a"), "live")
            self.assertWhoami(c.get("/b"), "live")
            self.assertIs(lb.server("web", "dead")["unreachable"], True)
            self.assertIs(lb.server("web", "dead")["healthy"], False)
            self.assertEqual(lb.metrics().get("weir_server_out", backend="web", server="dead",
                                              cause="unreachable"), 1)
            # Out until the interval ends; then live traffic tries it again, and it is out for
            # twice as long.
            wait_until(lambda: not lb.server("web", "dead")["unreachable"], 5, what="interval over")
            for i in range(4):
                self.assertWhoami(c.get(f"/c{i}"), "live")
            lb.proc.wait_log(r"server web/dead unreachable \(connection refused\): out of rotation for 2000 ms")
            self.assertEqual(lb.server("web", "dead")["connect_failures"], 2)
            # The server comes back on its port: once the interval is over, a successful connect
            # ends the streak and it takes its share again.
            back = self.start_whoami("back", port=dead)
            wait_until(lambda: not lb.server("web", "dead")["unreachable"], 5, what="interval over")
            names = collections.Counter(c.get(f"/d{i}").whoami_name() for i in range(10))
            self.assertEqual(names, {"back": 5, "live": 5})
            self.assertEqual(lb.server("web", "dead")["connect_failures"], 2)
        back.proc.stop()

    def test_last_server_is_never_taken_out(self):
        dead = free_port()
        lb = self.start_lb([{"address": f"127.0.0.1:{dead}", "name": "dead"}])
        for i in range(3):
            self.assertEqual(http_get(lb.port, f"/x{i}").status, 502)
        st = lb.server("web", "dead")
        self.assertEqual(st["connect_failures"], 3)
        self.assertIs(st["unreachable"], False)
        # The server starts: the very next request reaches it (no 503 for an interval).
        w = self.start_whoami("now", port=dead)
        self.assertWhoami(http_get(lb.port, "/y"), "now")
        w.proc.stop()

    def test_a_passing_probe_brings_it_back(self):
        live = self.start_whoami("live")
        w = self.start_whoami("flaky")
        check = {"type": "http", "path": "/healthz", "interval": "300ms", "timeout": "500ms",
                 "rise": 1, "fall": 3}
        lb = self.start_lb([{"address": w.address, "name": "flaky"},
                            {"address": live.address, "name": "live"}],
                           backend_extra={"retries": 2, "health_check": check})
        wait_until(lambda: lb.server("web", "flaky")["probes_passed"] >= 1, 5, what="a passing probe")
        # Killed: live traffic finds it unreachable long before the checker's three failures.
        w.proc.stop(sig=9)
        with HttpConn(lb.port) as c:
            for i in range(4):
                self.assertWhoami(c.get(f"/k{i}"), "live")
        lb.proc.wait_log(r"server web/flaky unreachable \(connection refused\)")
        self.assertIs(lb.server("web", "flaky")["healthy"], False)
        # Back on its port: in rotation again once a probe passes.
        w2 = self.start_whoami("again", port=w.port)
        passed = lb.server("web", "flaky")["probes_passed"]
        wait_until(lambda: lb.server("web", "flaky")["probes_passed"] > passed, 5, what="a passing probe")
        wait_until(lambda: lb.server("web", "flaky")["healthy"], 5, what="back in rotation")
        self.assertIs(lb.server("web", "flaky")["unreachable"], False)
        with HttpConn(lb.port) as c:
            names = collections.Counter(c.get(f"/m{i}").whoami_name() for i in range(10))
        self.assertEqual(names, {"again": 5, "live": 5})
        w2.proc.stop()


class PassiveTest(WeirTestCase):
    def test_failing_server_ejected_by_live_traffic(self):
        live = self.start_whoami("live")
        bad = self.start_server(always_500)
        lb = self.start_lb([{"address": bad.address, "name": "bad"},
                            {"address": live.address, "name": "live"}],
                           backend_extra={"passive": {"failures": 2, "cooldown": "2s"}})
        with HttpConn(lb.port) as c:
            statuses = [c.get(f"/p{i}").status for i in range(10)]
        self.assertEqual(statuses.count(500), 2, statuses)
        log = lb.proc.wait_log(
            r"server web/bad ejected for 2000 ms: 2 consecutive failures \(status 500\)", timeout=5)
        self.assertEqual(len(re.findall(r"web/bad ejected", log)), 1, log)
        self.assertIs(lb.server("web", "bad")["healthy"], False)
        self.assertIs(lb.server("web", "bad")["ejected"], True)
        self.assertIs(lb.server("web", "live")["healthy"], True)
        self.assertEqual(lb.metrics().get("weir_server_up", backend="web", server="bad"), 0)
        self.assertEqual(lb.metrics().get("weir_server_out", backend="web", server="bad", cause="ejected"), 1)
        # After the cooldown it is tried again, fails again and is ejected for longer.
        wait_until(lambda: not lb.server("web", "bad")["ejected"], 5, what="cooldown over")
        with HttpConn(lb.port) as c:
            for i in range(10):
                c.get(f"/q{i}")
        lb.proc.wait_log(r"server web/bad ejected for 4000 ms", timeout=5)

    def test_5xx_responses_eject(self):
        good = self.start_whoami("good")
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
        bads = [self.start_server(always_500) for _ in range(3)]
        servers = [{"address": b.address, "name": f"bad{i}"} for i, b in enumerate(bads)]
        servers.append({"address": live.address, "name": "live"})
        lb = self.start_lb(servers, backend_extra={"passive": {"failures": 1, "cooldown": "10s",
                                                               "max_ejected_percent": 50}})
        with HttpConn(lb.port) as c:
            for i in range(30):
                r = c.get(f"/m{i}")
                self.assertIn(r.status, (200, 500), r)
        servers = lb.backends()["backends"][0]["servers"]
        unhealthy = [s["name"] for s in servers if not s["healthy"]]
        self.assertEqual(len(unhealthy), 2, servers)
        self.assertNotIn("live", unhealthy)
        self.assertEqual(len(re.findall(r"ejected for", lb.proc.stderr())), 2)


if __name__ == "__main__":
    unittest.main()
