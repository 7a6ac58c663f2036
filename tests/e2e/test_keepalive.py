"""Keep-alive: upstream connection reuse, pipelining, HTTP/1.0, Connection: close."""

import unittest

from weirtest import HttpConn, WeirTestCase, buffers, build_request, http_get, wait_until


class KeepAliveTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.w = self.start_whoami("ka")
        self.lb = self.start_lb([self.w.port])

    def test_upstream_connection_reused_on_one_client_connection(self):
        m0 = self.lb.metrics()
        ports = set()
        with HttpConn(self.lb.port) as c:
            for i in range(30):
                r = c.get(f"/seq/{i}")
                self.assertWhoami(r, "ka")
                self.assertIn(f"GET /seq/{i} HTTP/1.1", r.text)
                ports.add(r.whoami_field("RemoteAddr"))
        self.assertEqual(len(ports), 1, f"upstream source addresses: {ports}")
        m1 = self.lb.metrics()
        reuses = m1.get("weir_upstream_reuses_total") - m0.get("weir_upstream_reuses_total")
        connects = m1.get("weir_upstream_connects_total") - m0.get("weir_upstream_connects_total")
        self.assertEqual(connects, 1)
        self.assertEqual(reuses, 29)

    def test_upstream_connection_reused_across_client_connections(self):
        ports = set()
        for i in range(10):
            r = http_get(self.lb.port, f"/c/{i}")
            self.assertWhoami(r, "ka")
            ports.add(r.whoami_field("RemoteAddr"))
        # Sequential clients on one worker share its idle upstream pool.
        self.assertEqual(len(ports), 1, f"upstream source addresses: {ports}")
        m = self.lb.metrics()
        self.assertGreaterEqual(m.get("weir_upstream_reuses_total"), 9)

    def test_client_connection_stays_open(self):
        with HttpConn(self.lb.port) as c:
            local = c.local_port()
            for i in range(5):
                r = c.get(f"/k{i}")
                self.assertWhoami(r)
                self.assertNotEqual((r.header("Connection") or "").lower(), "close")
                # The client's source port reaches the backend as X-Forwarded-For, not the
                # port: what matters is the same socket carried all five.
                self.assertEqual(c.local_port(), local)
            self.assertFalse(c.is_closed(0.3))
            # Idle between requests, it holds no buffer block (nor does the pooled upstream one).
            wait_until(lambda: self.blocks() == 0, 5, what="the idle connection to hold no block")

    def blocks(self) -> int:
        return buffers(self.lb.admin_port)["in_use"]

    def test_buffer_blocks_per_connection(self):
        # The design (docs/ARCHITECTURE.md, memory): a client connection's two buffers are one
        # pooled block each (16 KiB) while a request is in progress and none while it is idle;
        # an exchange adds its server connection's in block and, for a request body, its out
        # block. So N idle keep-alive connections hold 0 blocks, N heads in progress at most 2N,
        # N requests with bodies in flight at most 4N -- whatever the size of the bodies.
        n = 20
        conns = [HttpConn(self.lb.port) for _ in range(n)]
        for c in conns:
            self.addCleanup(c.close)
            self.assertWhoami(c.get("/first"), "ka")
        wait_until(lambda: self.blocks() == 0, 5, what=f"{n} idle connections to hold no block")
        for c in conns:
            c.send(b"POST /half HTTP/1.1\r\nHost: example.test\r\n")
        wait_until(lambda: self.blocks() >= n, 5, what=f"{n} heads in progress")
        self.assertLessEqual(self.blocks(), 2 * n)
        for c in conns:
            c.send(b"Content-Length: 100000\r\n\r\n" + b"b" * 50000)
        wait_until(lambda: sum(s["active_requests"] for s in self.lb.backends()["backends"][0]["servers"]) == n,
                   5, what=f"{n} requests in flight")
        self.assertLessEqual(self.blocks(), 4 * n)
        for c in conns:
            c.send(b"b" * 50000)
        for c in conns:
            r = c.read_response("POST")
            self.assertWhoami(r, "ka")
            self.assertEqual(r.whoami_field("Body-Length"), "100000")
        wait_until(lambda: self.blocks() == 0, 5, what=f"{n} idle connections to hold no block again")

    def test_pipelining_in_order(self):
        paths = [f"/pipe/{i}" for i in range(6)]
        data = b"".join(build_request("GET", p) for p in paths)
        with HttpConn(self.lb.port) as c:
            c.send(data)
            for p in paths:
                r = c.read_response()
                self.assertWhoami(r, "ka")
                self.assertIn(f"GET {p} HTTP/1.1", r.text)
                self.assertEqual(r.text.count("GET /pipe/"), 1)
            # Still usable afterwards.
            r = c.get("/after")
            self.assertIn("GET /after HTTP/1.1", r.text)

    def test_pipelining_mixed_methods_and_bodies(self):
        data = (build_request("POST", "/p1", body=b"hello") +
                build_request("HEAD", "/p2") +
                build_request("PUT", "/p3", headers=[("Transfer-Encoding", "chunked")],
                              body=b"3\r\nabc\r\n0\r\n\r\n") +
                build_request("GET", "/p4"))
        with HttpConn(self.lb.port) as c:
            c.send(data)
            r1 = c.read_response("POST")
            self.assertIn("POST /p1 HTTP/1.1", r1.text)
            self.assertEqual(r1.whoami_field("Body-Length"), "5")
            r2 = c.read_response("HEAD")
            self.assertEqual(r2.status, 200)
            self.assertEqual(r2.body, b"")
            r3 = c.read_response("PUT")
            self.assertIn("PUT /p3 HTTP/1.1", r3.text)
            self.assertEqual(r3.whoami_field("Body-Length"), "3")
            r4 = c.read_response("GET")
            self.assertIn("GET /p4 HTTP/1.1", r4.text)

    def test_pipelined_requests_split_oddly(self):
        # Request boundaries that do not match send boundaries.
        data = b"".join(build_request("GET", f"/s/{i}") for i in range(4))
        with HttpConn(self.lb.port) as c:
            cut = [0, 7, 40, 41, 90, len(data)]
            for a, b in zip(cut, cut[1:]):
                c.send(data[a:b])
            for i in range(4):
                r = c.read_response()
                self.assertIn(f"GET /s/{i} HTTP/1.1", r.text)

    def test_http10_without_keepalive_closes(self):
        with HttpConn(self.lb.port) as c:
            c.send(b"GET /ten HTTP/1.0\r\nHost: a\r\n\r\n")
            r = c.read_response()
            self.assertWhoami(r, "ka")
            self.assertEqual(r.version, "HTTP/1.1")
            self.assertIn("GET /ten HTTP/1.", r.text)
            self.assertTrue(c.is_closed(5), "an HTTP/1.0 connection without keep-alive stays open")

    def test_http10_keepalive_kept(self):
        with HttpConn(self.lb.port) as c:
            for i in range(3):
                c.send(f"GET /ten{i} HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n".encode())
                r = c.read_response()
                self.assertWhoami(r, "ka")
                self.assertIn(f"GET /ten{i} HTTP/1.", r.text)
                self.assertEqual((r.header("Connection") or "").lower(), "keep-alive")
                self.assertIsNotNone(r.header("Content-Length"))

    def test_connection_close_honoured(self):
        with HttpConn(self.lb.port) as c:
            c.send(build_request("GET", "/bye", headers=[("Connection", "close")]))
            r = c.read_response()
            self.assertWhoami(r, "ka")
            self.assertEqual((r.header("Connection") or "").lower(), "close")
            self.assertTrue(c.is_closed(5), "Connection: close did not close")

    def test_connection_close_in_pipeline_stops_there(self):
        data = (build_request("GET", "/first") +
                build_request("GET", "/last", headers=[("Connection", "close")]) +
                build_request("GET", "/never"))
        with HttpConn(self.lb.port) as c:
            c.send(data)
            self.assertIn("GET /first", c.read_response().text)
            self.assertIn("GET /last", c.read_response().text)
            self.assertTrue(c.is_closed(5))
        # /never was not forwarded.
        self.assertEqual(self.lb.server("web", "web-1")["requests_total"], 2)


if __name__ == "__main__":
    unittest.main()
