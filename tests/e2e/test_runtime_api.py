"""Runtime API (ops.md "Runtime API"): server state ready/drain/maint and weight through
POST /api/v1/backends/{backend}/servers/{server} behind admin.token_file; 401/404/400; states
kept across SIGHUP; the cache purge endpoint behind the same token; the admin listener's own
timeouts and connection cap (a client holding connections cannot lock others out)."""

import json
import os
import socket
import threading
import time
import unittest

from weirtest import (HOST, HttpConn, WeirTestCase, admin_get, free_port, http_get,
                      http_request, lb_config, wait_until)

TOKEN = "s3cret-token-for-the-weir-api-0123456789"


def api(port, backend, server, body, token=TOKEN, method="POST"):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    if isinstance(raw, str):
        raw = raw.encode()
    return http_request(port, method, f"/api/v1/backends/{backend}/servers/{server}",
                        headers=headers, body=raw if method == "POST" else None)


class RuntimeApiTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.a = self.start_whoami("a")
        self.b = self.start_whoami("b")
        self.c = self.start_whoami("c")
        self.token_file = os.path.join(self.tmp, "admin.token")
        with open(self.token_file, "w") as f:
            f.write(TOKEN + "\n")

    def config(self, admin_extra=None, backend_extra=None, servers=None, token=True):
        cfg = lb_config(free_port(), servers or [
            {"address": self.a.address, "name": "a"},
            {"address": self.b.address, "name": "b"},
            {"address": self.c.address, "name": "c"}],
            admin_port=free_port(),
            backend_extra=backend_extra or {"balance": "round_robin"})
        if token:
            cfg["admin"]["token_file"] = self.token_file
        cfg["admin"].update(admin_extra or {})
        return cfg

    def names(self, port, n, headers=None):
        out = {}
        for _ in range(n):
            r = http_get(port, "/", headers=headers)
            self.assertWhoami(r)
            out[r.whoami_name()] = out.get(r.whoami_name(), 0) + 1
        return out

    def test_without_token_file_writes_are_off(self):
        lb = self.start_weir(self.config(token=False))
        r = api(lb.admin_port, "web", "a", {"state": "drain"})
        self.assertEqual(r.status, 404, r.text)
        self.assertIn("token_file", r.text)
        self.assertEqual(lb.server("web", "a")["state"], "ready")
        # Reading is open.
        r = api(lb.admin_port, "web", "a", None, token=None, method="GET")
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.text)["name"], "a")

    def test_auth_and_errors_change_nothing(self):
        lb = self.start_weir(self.config())
        for token in (None, "wrong", TOKEN + "x", TOKEN[:-1], ""):
            r = api(lb.admin_port, "web", "a", {"state": "maint"}, token=token)
            self.assertEqual(r.status, 401, (token, r.text))
            self.assertIn("Bearer", r.header("WWW-Authenticate") or "")
        # Not a bearer scheme.
        r = http_request(lb.admin_port, "POST", "/api/v1/backends/web/servers/a",
                         headers={"Authorization": f"Basic {TOKEN}"}, body=b'{"state":"maint"}')
        self.assertEqual(r.status, 401)
        self.assertEqual(lb.server("web", "a")["state"], "ready")
        self.assertEqual(api(lb.admin_port, "nope", "a", {"state": "drain"}).status, 404)
        self.assertEqual(api(lb.admin_port, "web", "zz", {"state": "drain"}).status, 404)
        for bad in (b"{", b"[]", b"{}", b'{"state": "sleep"}', b'{"weight": -1}',
                    b'{"weight": 1001}', b'{"weight": "2"}', b'{"colour": 1}',
                    b'{"state": "drain", "extra": true}'):
            r = api(lb.admin_port, "web", "a", bad)
            self.assertEqual(r.status, 400, (bad, r.text))
            self.assertIn("error", json.loads(r.text))
        s = lb.server("web", "a")
        self.assertEqual((s["state"], s["weight"]), ("ready", 1))
        # Every server still takes traffic.
        self.assertEqual(set(self.names(lb.port, 6)), {"a", "b", "c"})

    def test_drain_keeps_sticky_clients_maint_does_not(self):
        lb = self.start_weir(self.config(backend_extra={
            "balance": "round_robin", "sticky": {"cookie": "srv"}}))
        cookies = {}
        for _ in range(6):
            r = http_get(lb.port, "/")
            cookies[r.whoami_name()] = r.header("Set-Cookie").split(";")[0]
        self.assertEqual(set(cookies), {"a", "b", "c"})
        r = api(lb.admin_port, "web", "a", {"state": "drain"})
        self.assertEqual(r.status, 200, r.text)
        doc = json.loads(r.text)
        self.assertEqual((doc["name"], doc["state"], doc["healthy"]), ("a", "drain", True))
        self.assertEqual(lb.server("web", "a")["state"], "drain")
        # New clients: never a; the sticky client of a: still a.
        self.assertNotIn("a", self.names(lb.port, 12))
        self.assertEqual(self.names(lb.port, 5, headers={"Cookie": cookies["a"]}), {"a": 5})
        # maint: not even its sticky clients.
        self.assertEqual(api(lb.admin_port, "web", "a", {"state": "maint"}).status, 200)
        got = self.names(lb.port, 6, headers={"Cookie": cookies["a"]})
        self.assertNotIn("a", got)
        self.assertNotIn("a", self.names(lb.port, 12))
        # ready: back in the rotation for everyone.
        self.assertEqual(api(lb.admin_port, "web", "a", {"state": "ready"}).status, 200)
        self.assertIn("a", self.names(lb.port, 6))
        self.assertEqual(self.names(lb.port, 3, headers={"Cookie": cookies["a"]}), {"a": 3})
        log = lb.proc.stderr()
        self.assertIn("server web/a set to drain", log)
        self.assertIn("server web/a set to maint", log)

    def test_request_in_flight_on_a_drained_or_maint_server_finishes(self):
        lb = self.start_weir(self.config())
        results = []

        def slow():
            results.append(http_get(lb.port, "/?delay=1500ms", timeout=20))

        # Round robin from a known point: find a request that lands on "a" by sending to all three.
        threads = [threading.Thread(target=slow) for _ in range(3)]
        for t in threads:
            t.start()
        wait_until(lambda: lb.server("web", "a")["active_requests"] == 1, 10, what="a busy")
        self.assertEqual(api(lb.admin_port, "web", "a", {"state": "maint"}).status, 200)
        for t in threads:
            t.join(20)
        self.assertEqual(sorted(r.whoami_name() for r in results), ["a", "b", "c"])
        for r in results:
            self.assertEqual(r.status, 200)
        self.assertNotIn("a", self.names(lb.port, 6))

    def test_weight_changes_the_share_and_zero_stops_new_traffic(self):
        lb = self.start_weir(self.config(servers=[
            {"address": self.a.address, "name": "a"},
            {"address": self.b.address, "name": "b"}]))
        r = api(lb.admin_port, "web", "a", {"weight": 3})
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(json.loads(r.text)["weight"], 3)
        self.assertEqual(lb.server("web", "a")["weight"], 3)
        self.assertEqual(self.names(lb.port, 40), {"a": 30, "b": 10})
        self.assertEqual(api(lb.admin_port, "web", "a", {"weight": 0, "state": "ready"}).status, 200)
        self.assertEqual(self.names(lb.port, 10), {"b": 10})
        self.assertIn("server web/a weight 0 (was 3)", lb.proc.stderr())

    def test_state_and_weight_kept_across_reload(self):
        cfg = self.config()
        lb = self.start_weir(cfg)
        self.assertEqual(api(lb.admin_port, "web", "a", {"state": "drain"}).status, 200)
        self.assertEqual(api(lb.admin_port, "web", "b", {"state": "maint", "weight": 4}).status,
                         200)
        cfg["backends"][0]["timeouts"] = {"response": "20s"}  # a real change
        self.assertTrue(lb.reload(cfg))
        self.assertEqual(lb.server("web", "a")["state"], "drain")
        s = lb.server("web", "b")
        self.assertEqual((s["state"], s["weight"]), ("maint", 4))
        self.assertEqual(self.names(lb.port, 6), {"c": 6})
        # A reload that also changes the token: the old one stops working.
        with open(self.token_file, "w") as f:
            f.write("another-token-0123456789abcdef\n")
        self.assertTrue(lb.reload(cfg))
        self.assertEqual(api(lb.admin_port, "web", "b", {"state": "ready"}).status, 401)
        r = api(lb.admin_port, "web", "b", {"state": "ready"},
                token="another-token-0123456789abcdef")
        self.assertEqual(r.status, 200)
        self.assertEqual(set(self.names(lb.port, 8)), {"b", "c"})

    def test_backends_json_has_state_errors_and_latency(self):
        lb = self.start_weir(self.config())
        for _ in range(6):
            http_get(lb.port, "/?status=503")
        for _ in range(6):
            http_get(lb.port, "/")
        doc = lb.backends()
        self.assertEqual(len(doc["latency_buckets"]), 12)
        self.assertEqual(doc["listeners"][0]["name"], "web")
        self.assertEqual(doc["listeners"][0]["requests_total"], 12)
        for s in doc["backends"][0]["servers"]:
            self.assertEqual(s["state"], "ready")
            self.assertEqual(s["requests_total"], 4)
            self.assertEqual(s["errors_total"], 2)
            self.assertEqual(len(s["latency_counts"]), 13)
            self.assertEqual(sum(s["latency_counts"]), 4)

    def test_cache_purge_needs_the_token(self):
        cfg = self.config()
        cfg["caches"] = [{"name": "c1", "memory": "8MiB"}]
        cfg["listeners"][0].pop("backend")
        cfg["listeners"][0]["routes"] = [{"match": {"path_prefix": "/"}, "backend": "web", "cache": "c1"}]
        lb = self.start_weir(cfg)
        path = "/api/v1/caches/c1/purge"
        r = http_request(lb.admin_port, "POST", path, body=b'{"prefix": "/"}')
        self.assertEqual(r.status, 401)
        r = http_request(lb.admin_port, "POST", path, body=b'{"prefix": "/"}',
                         headers={"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(json.loads(r.text), {"purged": 0})

    def test_dashboard_page_is_served(self):
        lb = self.start_weir(self.config())
        r = admin_get(lb.admin_port, "/")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("Content-Type").startswith("text/html"))
        self.assertIn(b"<html", r.body.lower())

    def test_admin_cap_and_timeouts_keep_it_answering(self):
        lb = self.start_weir(self.config(admin_extra={
            "max_connections": 4, "header_timeout": "1s", "idle_timeout": "2s"}))
        held = []
        self.addCleanup(lambda: [s.close() for s in held])
        # A hostile client takes every slot: idle connections and slowly sent heads.
        for i in range(12):
            s = socket.create_connection((HOST, lb.admin_port), timeout=5)
            if i % 2:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
            held.append(s)
        t0 = time.monotonic()
        for _ in range(5):
            r = admin_get(lb.admin_port, "/healthz")
            self.assertEqual(r.status, 200)
        self.assertLess(time.monotonic() - t0, 5.0)  # not waiting for any timeout
        # The partial heads still open after the header timeout got 408 or were closed.
        time.sleep(2.5)
        for s in held:
            s.settimeout(2)
            try:
                data = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                data = b""
            self.assertTrue(data == b"" or data.startswith(b"HTTP/1.1 408"), data[:80])
        # An idle keep-alive connection closes after idle_timeout.
        with HttpConn(lb.admin_port) as c:
            self.assertEqual(c.get("/healthz").status, 200)
            self.assertTrue(c.wait_closed(6.0))


if __name__ == "__main__":
    unittest.main()
