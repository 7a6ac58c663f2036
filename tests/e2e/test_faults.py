"""Faults a retry can hide and faults it cannot.

Hidden: a reused keep-alive connection the server closed as the request arrived (any method, a
small body included) goes out again on a fresh connection; a request a server may have seen is
retried only within the retry budget (`retry_budget: {percent, min_retries}`).
Not hidden: a server that dies in the middle of its response. The client must see it: the
HTTP/1.1 connection closes before the body is complete (never a complete-looking body, never a
hang), an HTTP/2 stream is reset (never END_STREAM)."""

import threading
import unittest

from tlstest import H2Conn
from weirtest import HttpConn, WeirTestCase, read_request_head, wait_until


def read_body(c, data: bytes) -> bytes:
    """The request body the head announces (Content-Length only); `data` is what
    read_request_head returned: the head and maybe the first body bytes."""
    head, _, body = data.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v.strip())
    while len(body) < n:
        chunk = c.recv(n - len(body))
        if not chunk:
            break
        body += chunk
    return body


class StaleConnectionServer:
    """Answers the first request of every connection (keep-alive, echoing the body length) and
    closes the connection without a byte when a second request arrives on it: what a server
    whose keep-alive timeout fires just as weir reuses the connection looks like."""

    def __init__(self, test):
        self.lock = threading.Lock()
        self.answered: list[bytes] = []  # request lines answered
        self.dropped: list[bytes] = []   # request lines that met a closing connection
        self.server = test.start_server(self.handle)

    def handle(self, c):
        head = read_request_head(c)
        if not head:
            return
        body = read_body(c, head)
        line = head.split(b"\r\n", 1)[0]
        with self.lock:
            self.answered.append(line)
        msg = b"got %d bytes" % len(body)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(msg), msg))
        head = read_request_head(c)
        if head:
            with self.lock:
                self.dropped.append(head.split(b"\r\n", 1)[0])


class ReusedConnectionTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.origin = StaleConnectionServer(self)
        self.lb = self.start_lb([{"address": self.origin.server.address, "name": "s"}],
                                backend_extra={"retries": 0})

    def test_any_method_goes_out_again_on_a_fresh_connection(self):
        # retries: 0 and a single server: only the reused-connection rule can save these.
        with HttpConn(self.lb.port) as c:
            self.assertEqual(c.get("/first").status, 200)
            for i, (method, body) in enumerate([("POST", b"a=1&b=2"), ("PUT", b"x" * 6000),
                                                ("DELETE", None), ("POST", None)]):
                r = c.request(method, f"/m{i}", body=body)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.text, f"got {len(body or b'')} bytes")
        wait_until(lambda: len(self.origin.dropped) == 4, 5, what="the server to see 4 stale reuses")
        self.assertEqual(len(self.origin.answered), 5)
        m = self.lb.metrics()
        self.assertEqual(m.get("weir_retries_total", kind="unseen"), 4)
        self.assertEqual(m.get("weir_retries_total", kind="resent"), 0)
        self.assertEqual(self.lb.server("web", "s")["connect_failures"], 0,
                         "a reused connection closed by the server says nothing about its health")

    def test_a_body_too_big_to_keep_is_not_sent_twice(self):
        # Beyond the 8 KiB weir keeps for a replay, a body is streamed: once its first bytes are
        # gone, the request cannot go out again, and the client gets 502.
        with HttpConn(self.lb.port) as c:
            self.assertEqual(c.get("/first").status, 200)
            r = c.request("POST", "/big", body=b"y" * 200_000)
            self.assertEqual(r.status, 502, r)
        self.assertEqual(len(self.origin.answered), 1)
        self.assertEqual(self.lb.metrics().get("weir_retries_total", kind="unseen"), 0)


class RetryBudgetTest(WeirTestCase):
    def test_resent_requests_stop_at_the_budget(self):
        # A server that takes requests and never answers: each GET to it times out after the
        # server may have acted on it. With percent 0 and min_retries 2, two of them are retried
        # on the good server, the rest answer 504.
        def silent(c):
            while read_request_head(c):
                pass

        mute = self.start_server(silent)
        good = self.start_whoami("good")
        lb = self.start_lb([{"address": mute.address, "name": "mute"},
                            {"address": good.address, "name": "good"}],
                           backend_extra={"retries": 1, "timeouts": {"response": "300ms"},
                                          "retry_budget": {"percent": 0, "min_retries": 2}})
        statuses = []
        for i in range(8):
            with HttpConn(lb.port) as c:
                statuses.append(c.get(f"/b{i}").status)
        # Round robin: every other request meets the silent server first.
        self.assertEqual(statuses.count(504), 2, statuses)
        self.assertEqual(statuses.count(200), 6, statuses)
        m = lb.metrics()
        self.assertEqual(m.get("weir_retries_total", kind="resent"), 2)
        self.assertEqual(m.get("weir_retries_refused_by_budget_total"), 2)
        self.assertEqual(lb.server("web", "mute")["connect_failures"], 0)


def dying_origin(kind: str):
    """A server that sends a response head and part of the body, then dies."""
    def handle(c):
        if not read_request_head(c):
            return
        if kind == "length":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 30000)
        else:
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + b"7530\r\n" + b"b" * 30000 + b"\r\n")
        c.close()
    return handle


class MidResponseDeathTest(WeirTestCase):
    def lb_for(self, kind: str, **listener):
        origin = self.start_server(dying_origin(kind))
        return self.start_lb([{"address": origin.address, "name": "s"}],
                             backend_extra={"retries": 2}, listener_extra=listener or None)

    def test_http1_content_length_body_cut(self):
        lb = self.lb_for("length")
        with HttpConn(lb.port, timeout=10) as c:
            c.send(b"GET /x HTTP/1.1\r\nHost: example.test\r\n\r\n")
            head = c.read_head()
            self.assertEqual(head.status, 200)
            self.assertEqual(head.header("content-length"), "100000")
            body = c.read_until_close()
        # The connection closed with the body short of its length: the client knows.
        self.assertLess(len(body), 100000)
        self.assertGreater(len(body), 0)

    def test_http1_chunked_body_cut(self):
        lb = self.lb_for("chunked")
        with HttpConn(lb.port, timeout=10) as c:
            c.send(b"GET /x HTTP/1.1\r\nHost: example.test\r\n\r\n")
            head = c.read_head()
            self.assertEqual(head.status, 200)
            self.assertEqual(head.header("transfer-encoding"), "chunked")
            rest = c.read_until_close()
        # Never the last chunk: a truncated body is never presented as complete.
        self.assertNotIn(b"0\r\n\r\n", rest[-16:])
        self.assertIn(b"b" * 1000, rest)

    def test_http2_stream_reset(self):
        for kind in ("length", "chunked"):
            with self.subTest(kind=kind):
                lb = self.lb_for(kind, h2c=True)
                h2 = H2Conn(lb.port)
                self.addCleanup(h2.close)
                s = h2.get("/x", timeout=10)
                self.assertEqual(s.status, 200)
                self.assertFalse(s.ended, f"a cut body ended with END_STREAM: {s!r}")
                self.assertIsNotNone(s.reset, f"stream not reset: {s!r}")
                self.assertLess(s.data_len, 100000)
                # The connection itself lives on for other streams.
                self.assertFalse(h2.closed, h2.describe())


if __name__ == "__main__":
    unittest.main()
