"""Malformed and ambiguous requests: the right 4xx/5xx, the connection closed, nothing reaches
the backend, and the worker keeps serving."""

import unittest

from weirtest import Env, HttpConn, IncompleteResponse, WeirTestCase, backend_requests

H = b"Host: a.test\r\n"

# (name, raw bytes, expected status, reaches the backend?)
# The last field is True only for errors found in a body, after the head was forwarded.
CASES = [
    ("cl_and_te", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_and_cl", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("two_differing_cl", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("cl_list_differing", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!", 400),
    ("cl_negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    ("cl_not_number", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1x\r\n\r\nab", 400),
    ("cl_plus_sign", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", 400),
    ("cl_overflow", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    ("te_not_chunked_last", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("te_unknown_coding", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("te_in_http10", b"POST / HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("obs_fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n c\r\n\r\n", 400),
    ("bare_cr_in_value", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\rc\r\n\r\n", 400),
    ("bare_lf_line_ends", b"GET / HTTP/1.1\n" + H + b"\n", 400),
    ("nul_in_value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    ("ctl_in_value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x07b\r\n\r\n", 400),
    ("space_before_colon", b"GET / HTTP/1.1\r\nHost : a.test\r\n\r\n", 400),
    ("empty_header_name", b"GET / HTTP/1.1\r\n" + H + b": x\r\n\r\n", 400),
    ("bad_header_name_char", b"GET / HTTP/1.1\r\n" + H + b"X(A): b\r\n\r\n", 400),
    ("missing_host_http11", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    ("duplicate_host", b"GET / HTTP/1.1\r\n" + H + b"Host: b.test\r\n\r\n", 400),
    ("invalid_host", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("fragment_in_target", b"GET /a#frag HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("bad_percent_escape", b"GET /a%zz HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("truncated_percent_escape", b"GET /a%4 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("control_byte_in_target", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("invalid_method", b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("http2_version", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("http3_version", b"GET / HTTP/3.1\r\n" + H + b"\r\n", 505),
    ("garbage_version", b"GET / HTTX/1.1\r\n" + H + b"\r\n", 400),
    ("request_line_too_long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("header_too_long", b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 40000 + b"\r\n\r\n", 431),
    ("too_many_headers", b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(150)) + b"\r\n", 431),
    ("connect_method", b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n", 405),
]

# Errors inside a chunked body: the head may already be on its way to the server (as with every
# streaming proxy), so only the client side is checked.
BODY_CASES = [
    ("bad_chunk_size", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_size_overflow", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nx\r\n0\r\n\r\n", 400),
    ("chunk_missing_crlf", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n", 400),
]


class MalformedTest(WeirTestCase):
    @classmethod
    def setUpClass(cls):
        env = Env(cls.addClassCleanup)
        cls.w = env.start_whoami("good")
        cls.lb = env.start_lb([cls.w.port])

    def check(self, name, raw, status, backend_may_see=False):
        before = backend_requests(self.lb.admin_port)
        with HttpConn(self.lb.port, timeout=10) as c:
            try:
                c.send(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                r = c.read_response()
            except IncompleteResponse as e:
                self.fail(f"{name}: no response ({e})")
            self.assertEqual(r.status, status, f"{name}: {r.raw_head!r} {r.body[:100]!r}")
            self.assertEqual((r.header("Connection") or "").lower(), "close", name)
            self.assertNotIn(b"Name: good", r.body, name)
            self.assertTrue(c.wait_closed(10), f"{name}: connection not closed")
        if not backend_may_see:
            self.assertEqual(backend_requests(self.lb.admin_port), before, f"{name} reached the backend")

    def test_malformed_heads(self):
        self.assertGreaterEqual(len(CASES), 15)
        for name, raw, status in CASES:
            with self.subTest(name):
                self.check(name, raw, status)
        # The worker still serves.
        with HttpConn(self.lb.port) as c:
            self.assertWhoami(c.get("/still-ok"), "good")

    def test_malformed_bodies(self):
        for name, raw, status in BODY_CASES:
            with self.subTest(name):
                self.check(name, raw, status, backend_may_see=True)
        with HttpConn(self.lb.port) as c:
            self.assertWhoami(c.get("/still-ok"), "good")

    def test_bad_request_after_good_one_on_same_connection(self):
        with HttpConn(self.lb.port) as c:
            self.assertWhoami(c.get("/first"), "good")
            before = backend_requests(self.lb.admin_port)
            c.send(b"GET /a%zz HTTP/1.1\r\n" + H + b"\r\n" + b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 400)
            self.assertTrue(c.wait_closed(10))
        self.assertEqual(backend_requests(self.lb.admin_port), before)

    def test_smuggling_cl_te_does_not_leak_second_request(self):
        # The classic CL.TE desync: if the body were taken by Content-Length, "GPOST" would be
        # the start of the next request.
        before = backend_requests(self.lb.admin_port)
        raw = (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"0\r\n\r\nGPOST / HTTP/1.1\r\n" + H + b"\r\n")
        with HttpConn(self.lb.port) as c:
            c.send(raw)
            r = c.read_response()
            self.assertEqual(r.status, 400)
            self.assertTrue(c.wait_closed(10))
        self.assertEqual(backend_requests(self.lb.admin_port), before)

    def test_bad_requests_counted(self):
        m0 = self.lb.metrics().get("weir_bad_requests_total")
        for raw in (b"GET /a#b HTTP/1.1\r\n" + H + b"\r\n", b"GET / HTTP/2.0\r\n" + H + b"\r\n"):
            with HttpConn(self.lb.port) as c:
                c.send(raw)
                c.read_response()
        self.assertEqual(self.lb.metrics().get("weir_bad_requests_total") - m0, 2)

    def test_garbage_never_crashes(self):
        blobs = [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100,  # a TLS hello
                 b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                 bytes(range(256)),
                 b"\r\n" * 50,
                 b"GET / HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nshort"]
        for blob in blobs:
            with HttpConn(self.lb.port, timeout=5) as c:
                try:
                    c.send(blob)
                    c.sock.shutdown(1)
                    c.read_until_close()
                except OSError:
                    pass
        self.assertTrue(self.lb.proc.alive(), self.lb.proc.stderr()[-2000:])
        with HttpConn(self.lb.port) as c:
            self.assertWhoami(c.get("/alive"), "good")


if __name__ == "__main__":
    unittest.main()
