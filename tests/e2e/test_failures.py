"""Failing backends and slow clients: 502/504 with short bodies, retries, truncated responses,
header and idle timeouts."""

import socket
import time
import unittest

from weirtest import (HttpConn, IncompleteResponse, WeirTestCase, build_request, free_port,
                      http_get, http_request, read_request_head)


class BackendFailureTest(WeirTestCase):
    def assertShortErrorBody(self, r, dead_port=None):
        self.assertLess(len(r.body), 200, r.body)
        self.assertNotIn(b"127.0.0.1", r.body)
        if dead_port is not None:
            self.assertNotIn(str(dead_port).encode(), r.body)
            self.assertNotIn(str(dead_port).encode(), r.raw_head)

    def test_dead_server_502(self):
        dead = free_port()
        lb = self.start_lb([dead], backend_extra={"retries": 0})
        with HttpConn(lb.port) as c:
            r = c.get("/")
            self.assertEqual(r.status, 502)
            self.assertShortErrorBody(r, dead)
            # The client connection survives a 502 for a bodiless request.
            r2 = c.get("/again")
            self.assertEqual(r2.status, 502)
        m = lb.metrics()
        self.assertEqual(m.get("weir_requests_total", backend="web", code="502"), 2)

    def test_dead_server_with_retries_still_502(self):
        dead = free_port()
        lb = self.start_lb([dead])
        r = http_get(lb.port, "/")
        self.assertEqual(r.status, 502)
        self.assertShortErrorBody(r, dead)

    def test_retry_goes_to_live_server(self):
        live = self.start_whoami("live")
        dead = free_port()
        lb = self.start_lb([{"address": f"127.0.0.1:{dead}", "name": "dead"},
                            {"address": live.address, "name": "live"}],
                           backend_extra={"retries": 2})
        with HttpConn(lb.port) as c:
            for i in range(20):
                r = c.get(f"/r{i}")
                self.assertWhoami(r, "live")
        # POST with a body that was not sent yet is retried too (the connect failed).
        r = http_request(lb.port, "POST", "/p", body=b"data")
        self.assertWhoami(r, "live")
        self.assertEqual(r.whoami_field("Body-Length"), "4")

    def test_hanging_server_504(self):
        def hang(c):
            read_request_head(c)
            time.sleep(8)  # never answers within the test

        be = self.start_server(hang)
        lb = self.start_lb([be.port], backend_extra={"timeouts": {"response": "500ms"}, "retries": 0})
        t0 = time.monotonic()
        r = http_get(lb.port, "/slow")
        took = time.monotonic() - t0
        self.assertEqual(r.status, 504)
        self.assertShortErrorBody(r, be.port)
        self.assertGreaterEqual(took, 0.4)  # functional: it did wait for the timeout

    def test_slow_whoami_504_then_fast_ok(self):
        w = self.start_whoami("slowpoke")
        lb = self.start_lb([w.port], backend_extra={"timeouts": {"response": "300ms"}})
        self.assertEqual(http_get(lb.port, "/?delay=2s").status, 504)
        self.assertWhoami(http_get(lb.port, "/?delay=10ms"), "slowpoke")

    def test_garbage_server_502(self):
        def garbage(c):
            read_request_head(c)
            c.sendall(b"SSH-2.0-OpenSSH_9.2\r\nthis is not http\r\n\r\n")

        be = self.start_server(garbage)
        lb = self.start_lb([be.port], backend_extra={"retries": 0})
        r = http_get(lb.port, "/")
        self.assertEqual(r.status, 502)
        self.assertShortErrorBody(r, be.port)

    def test_invalid_response_framing_502(self):
        def both(c):
            read_request_head(c)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")

        be = self.start_server(both)
        lb = self.start_lb([be.port], backend_extra={"retries": 0})
        r = http_get(lb.port, "/")
        self.assertEqual(r.status, 502)
        self.assertShortErrorBody(r, be.port)

    def test_server_closing_before_answer_502(self):
        def close_now(c):
            read_request_head(c)
            c.close()

        be = self.start_server(close_now)
        lb = self.start_lb([be.port], backend_extra={"retries": 0})
        r = http_get(lb.port, "/")
        self.assertEqual(r.status, 502)
        self.assertShortErrorBody(r, be.port)

    def test_server_closing_mid_body_truncates(self):
        def truncate(c):
            read_request_head(c)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + b"t" * 100)
            time.sleep(0.2)  # the server's behaviour under test: part of the body, a pause, then gone

        be = self.start_server(truncate)
        lb = self.start_lb([be.port], backend_extra={"retries": 0})
        with HttpConn(lb.port) as c:
            c.send(build_request("GET", "/trunc"))
            with self.assertRaises(IncompleteResponse) as cm:
                c.read_response()
            partial = cm.exception.partial
            self.assertIsNotNone(partial)
            self.assertEqual(partial.status, 200)
            self.assertLess(len(partial.body), 10000)

    def test_server_closing_mid_chunked_body_truncates(self):
        def truncate(c):
            read_request_head(c)
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n100\r\nabc")
            time.sleep(0.2)  # the server's behaviour under test: part of the body, a pause, then gone

        be = self.start_server(truncate)
        lb = self.start_lb([be.port], backend_extra={"retries": 0})
        with HttpConn(lb.port) as c:
            c.send(build_request("GET", "/trunc"))
            # Never a well-formed complete response (no terminating zero chunk).
            with self.assertRaises((IncompleteResponse, ValueError)):
                c.read_response()

    def test_status_passed_through_not_retried(self):
        a = self.start_whoami("a")
        b = self.start_whoami("b")
        lb = self.start_lb([{"address": a.address, "name": "a"}, {"address": b.address, "name": "b"}])
        r = http_get(lb.port, "/?status=503")
        self.assertEqual(r.status, 503)
        self.assertIn(r.whoami_name(), ("a", "b"))
        total = lb.server("web", "a")["requests_total"] + lb.server("web", "b")["requests_total"]
        self.assertEqual(total, 1)


class ClientTimeoutTest(WeirTestCase):
    def test_slowloris_header_timeout(self):
        w = self.start_whoami("fine")
        lb = self.start_lb([w.port], listener_extra={"timeouts": {"header": "1s"}})
        slow = HttpConn(lb.port, timeout=15)
        self.addCleanup(slow.close)
        slow.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        t0 = time.monotonic()
        # Meanwhile another client is served normally.
        with HttpConn(lb.port) as c:
            for _ in range(5):
                self.assertWhoami(c.get("/"), "fine")
        # Trickling bytes does not extend the deadline.
        for _ in range(3):
            time.sleep(0.2)  # the trickle is the test: bytes that arrive slowly do not extend the deadline
            try:
                slow.send(b"a")
            except OSError:
                break
        data = slow.read_until_close()
        took = time.monotonic() - t0
        if data:
            self.assertTrue(data.startswith(b"HTTP/1.1 408 "), data[:100])
        self.assertLess(took, 10)
        self.assertEqual(lb.server("web", "web-1")["requests_total"], 5)

    def test_idle_keepalive_timeout_closes(self):
        w = self.start_whoami("idle")
        lb = self.start_lb([w.port], listener_extra={"timeouts": {"idle": "1s"}})
        with HttpConn(lb.port, timeout=15) as c:
            self.assertWhoami(c.get("/"), "idle")
            t0 = time.monotonic()
            self.assertTrue(c.wait_closed(10), "idle keep-alive connection not closed")
            self.assertGreaterEqual(time.monotonic() - t0, 0.5)

    def test_idle_connection_without_request_closes(self):
        w = self.start_whoami("idle2")
        lb = self.start_lb([w.port], listener_extra={"timeouts": {"idle": "1s", "header": "1s"}})
        with HttpConn(lb.port, timeout=15) as c:
            self.assertTrue(c.wait_closed(10), "a connection that never sent anything stays open")

    def test_many_slow_clients_do_not_block_others(self):
        w = self.start_whoami("busy")
        lb = self.start_lb([w.port], listener_extra={"timeouts": {"header": "2s"}})
        slow = []
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", lb.port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\n")
            slow.append(s)
        self.addCleanup(lambda: [s.close() for s in slow])
        for _ in range(5):
            self.assertWhoami(http_get(lb.port, "/"), "busy")


if __name__ == "__main__":
    unittest.main()
