"""Message bodies: chunked requests and responses, 100-continue, close-delimited responses,
bodiless responses, and 100 MB each way with weir's memory staying bounded."""

import hashlib
import os
import re
import socket
import threading
import time
import unittest

from weirtest import (BufferWatch, HttpConn, WeirTestCase, buffers, build_request, degrade, hwm, read_request_head,
                      reset_hwm, rss, wait_until)

MB = 1024 * 1024
BIG = 100 * MB
# The designed bound (docs/ARCHITECTURE.md, "Memory ownership and limits"): one HTTP/1.1 exchange
# holds at most 4 buffer blocks of max(buffer_size, max_header_bytes) = 16 KiB, whatever the
# body size -- the client connection's in and out buffers, the server connection's in buffer and,
# for a request with a body, its out buffer (a plain-HTTP response body is spliced through a
# kernel pipe, never through weir's memory). So 100 MB each way costs 64 KiB of buffers. The
# tests sample `buffers.in_use` from the admin API all along and hold weir to that exactly.
H1_EXCHANGE_BLOCKS = 4
# Beside the exact block count, the RSS high-water mark of the debug build is a backstop for
# memory outside the buffer pool: 64 KiB of design plus allocator and ASan slack (ASan's
# quarantine keeps freed memory for a while, shadow memory grows with it).
RSS_BUDGET = 60 * MB


def read_body(c: socket.socket, head: bytes):
    """Reads the request body that follows head (Content-Length or chunked) from c; returns
    (body bytes, leftover)."""
    hdr, _, rest = head.partition(b"\r\n\r\n")
    fields = {}
    for line in hdr.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        fields[k.strip().lower()] = v.strip()
    buf = bytearray(rest)

    def need(n):
        while len(buf) < n:
            chunk = c.recv(262144)
            if not chunk:
                raise EOFError
            buf.extend(chunk)

    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        body = bytearray()
        while True:
            while b"\r\n" not in buf:
                need(len(buf) + 1)
            i = buf.index(b"\r\n")
            size = int(bytes(buf[:i]).split(b";")[0], 16)
            del buf[:i + 2]
            if size == 0:
                while True:
                    while b"\r\n" not in buf:
                        need(len(buf) + 1)
                    i = buf.index(b"\r\n")
                    line = bytes(buf[:i])
                    del buf[:i + 2]
                    if not line:
                        return bytes(body), bytes(buf)
            need(size + 2)
            body += buf[:size]
            del buf[:size + 2]
    n = int(fields.get(b"content-length", b"0"))
    need(n)
    return bytes(buf[:n]), bytes(buf[n:])


def digest_backend(c: socket.socket):
    """A keep-alive backend answering each request with 'len=N sha=HEX' of its body."""
    pending = b""
    while True:
        head = pending
        while b"\r\n\r\n" not in head:
            chunk = c.recv(65536)
            if not chunk:
                return
            head += chunk
        i = head.index(b"\r\n\r\n") + 4
        body, pending = read_body(c, head[:i] + head[i:])
        msg = f"len={len(body)} sha={hashlib.sha256(body).hexdigest()}".encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(msg), msg))


class BodiesTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.w = self.start_whoami("bodies")
        self.lb = self.start_lb([self.w.port])

    # ---- request bodies

    def test_content_length_body(self):
        with HttpConn(self.lb.port) as c:
            r = c.request("POST", "/cl", body=b"x" * 1000)
            self.assertWhoami(r, "bodies")
            self.assertEqual(r.whoami_field("Body-Length"), "1000")
            self.assertEqual(r.whoami_field("Content-Length"), "1000")

    def test_chunked_request_body(self):
        body = b"5\r\nhello\r\n1;ext=1\r\n,\r\n10\r\n" + b"y" * 16 + b"\r\n0\r\nX-Trailer: t\r\n\r\n"
        with HttpConn(self.lb.port) as c:
            r = c.request("POST", "/chunked", headers=[("Transfer-Encoding", "chunked")], body=body)
            self.assertWhoami(r, "bodies")
            self.assertEqual(r.whoami_field("Body-Length"), "22")
            # The connection stays in sync after the trailer.
            r2 = c.get("/next")
            self.assertIn("GET /next HTTP/1.1", r2.text)

    def test_chunked_request_exact_bytes(self):
        digest = self.start_server(digest_backend)
        lb = self.start_lb([digest.port])
        payload = os.urandom(300_000)
        pieces = [payload[i:i + 7777] for i in range(0, len(payload), 7777)]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        with HttpConn(lb.port) as c:
            r = c.request("PUT", "/up", headers=[("Transfer-Encoding", "chunked")], body=body)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.text, f"len={len(payload)} sha={hashlib.sha256(payload).hexdigest()}")
            r = c.request("POST", "/up2", body=payload[:1234])
            self.assertEqual(r.text, f"len=1234 sha={hashlib.sha256(payload[:1234]).hexdigest()}")

    def test_expect_100_continue(self):
        with HttpConn(self.lb.port) as c:
            c.send(build_request("POST", "/expect", headers=[("Expect", "100-continue"),
                                                             ("Content-Length", "10")]))
            # The interim 100 must come before we send any body byte.
            interim = c.read_head()
            self.assertEqual(interim.status, 100, interim.raw_head)
            c.send(b"0123456789")
            r = c.read_response("POST")
            self.assertWhoami(r, "bodies")
            self.assertEqual(r.whoami_field("Body-Length"), "10")
            self.assertEqual(r.interim, [], "more than one 100 Continue")
            # Same connection, next request.
            r2 = c.get("/after")
            self.assertIn("GET /after", r2.text)

    def test_expect_100_continue_chunked(self):
        with HttpConn(self.lb.port) as c:
            c.send(build_request("POST", "/expect", headers=[("Expect", "100-continue"),
                                                             ("Transfer-Encoding", "chunked")]))
            interim = c.read_head()
            self.assertEqual(interim.status, 100, interim.raw_head)
            c.send(b"3\r\nabc\r\n0\r\n\r\n")
            r = c.read_response("POST")
            self.assertEqual(r.whoami_field("Body-Length"), "3")
            self.assertEqual(r.interim, [])

    # ---- response bodies

    def test_chunked_response_from_backend(self):
        chunks = [b"first-", os.urandom(5000), b"", b"last"]  # b"" is skipped below

        def chunked_backend(c):
            while True:
                head = read_request_head(c)
                if not head:
                    return
                out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Backend: py\r\n\r\n"
                for ch in chunks:
                    if ch:
                        out += b"%x;name=val\r\n%s\r\n" % (len(ch), ch)
                out += b"0\r\nX-Trailer: yes\r\n\r\n"
                c.sendall(out)

        be = self.start_server(chunked_backend)
        lb = self.start_lb([be.port])
        expect = b"".join(chunks)
        with HttpConn(lb.port) as c:
            for _ in range(2):  # twice on one connection: the framing stays in sync
                r = c.get("/chunky")
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("X-Backend"), "py")
                self.assertEqual(r.body, expect)
                self.assertIn(r.framing, ("chunked", "length"))

    def test_close_delimited_response_becomes_correct(self):
        payload = os.urandom(20000)

        def close_backend(c):
            if not read_request_head(c):
                return
            c.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: close\r\n\r\n" + payload[:7000])
            time.sleep(0.05)  # the body arrives in two pieces: part of the behaviour under test
            c.sendall(payload[7000:])
            c.shutdown(socket.SHUT_WR)

        be = self.start_server(close_backend)
        lb = self.start_lb([be.port])
        with HttpConn(lb.port) as c:
            r = c.get("/eof")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("X-Backend"), "close")
            self.assertEqual(r.body, payload)
            if r.framing == "close":
                self.assertTrue(c.is_closed(5))
            else:
                # Re-framed (chunked): the client connection may be reused.
                self.assertEqual(r.framing, "chunked")
                r2 = c.get("/eof2")
                self.assertEqual(r2.body, payload)

    def test_head_has_no_body(self):
        with HttpConn(self.lb.port) as c:
            r = c.request("HEAD", "/head?size=5000")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"")
            self.assertGreater(int(r.header("Content-Length")), 5000)
            # Had any body byte leaked, this response would not parse.
            r2 = c.get("/after-head")
            self.assertWhoami(r2, "bodies")
            self.assertIn("GET /after-head", r2.text)

    def test_204_and_304_have_no_body(self):
        with HttpConn(self.lb.port) as c:
            for status in (204, 304):
                c.send(build_request("GET", f"/s?status={status}") + build_request("GET", "/probe"))
                r = c.read_response()
                self.assertEqual(r.status, status)
                self.assertEqual(r.body, b"")
                r2 = c.read_response()
                self.assertWhoami(r2, "bodies")
                self.assertIn("GET /probe", r2.text)

    def test_backend_204_with_stray_body_bytes_is_not_passed_on(self):
        def bad_204(c):
            while True:
                if not read_request_head(c):
                    return
                # A 204 has no body whatever the headers say; a broken server sends some.
                c.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")

        be = self.start_server(bad_204)
        lb = self.start_lb([be.port])
        with HttpConn(lb.port) as c:
            r = c.get("/x")
            self.assertEqual(r.status, 204)
            self.assertEqual(r.body, b"")
            self.assertIsNone(r.header("Transfer-Encoding"))

    # ---- 100 MB each way

    def _idle_rss(self, lb, warm_body=True):
        # Warm the paths up (buffers, pools), then read the steady RSS and reset the peak.
        with HttpConn(lb.port) as c:
            for _ in range(3):
                if warm_body:
                    c.request("POST", "/warm", body=b"w" * 100000)
                else:
                    c.get("/warm")
        # The warm-up connection's close is handled: every block is back in the pool.
        wait_until(lambda: buffers(lb.admin_port)["in_use"] == 0, 5, what="the warm-up's blocks back")
        base = rss(lb.pid)
        if not reset_hwm(lb.pid):
            degrade("/proc/PID/clear_refs refused: the RSS peak is measured from weir's start")
            base = max(base, hwm(lb.pid))
        # Sampled until _check_blocks().
        self.watch = BufferWatch(lb.admin_port)
        self.addCleanup(self.watch.close)
        return base

    def _check_blocks(self, what, bound=H1_EXCHANGE_BLOCKS):
        peak = self.watch.stop()
        print(f"{what}: at most {peak} buffer blocks of {self.watch.block_bytes} B held "
              f"({self.watch.samples} samples; designed bound {bound})")
        self.assertLessEqual(peak, bound, f"{what}: buffer blocks held")

    def _report(self, what, took, base, peak):
        print(f"\n{what}: {took:.1f}s, weir RSS idle {base / MB:.1f} MiB, peak {peak / MB:.1f} MiB, "
              f"growth {(peak - base) / MB:.1f} MiB")
        self._check_blocks(what)

    def _upload(self, lb, total=BIG):
        block = b"u" * MB
        with HttpConn(lb.port, timeout=60) as c:
            c.send(build_request("POST", "/upload", headers=[("Content-Length", str(total))]))
            for _ in range(total // MB):
                c.send(block)
            return c.read_response("POST")

    def test_upload_100mb_to_whoami(self):
        base = self._idle_rss(self.lb)
        t0 = time.monotonic()
        r = self._upload(self.lb)
        peak = hwm(self.lb.pid)
        self._report("upload 100 MiB to whoami", time.monotonic() - t0, base, peak)
        self.assertWhoami(r, "bodies")
        self.assertEqual(r.whoami_field("Body-Length"), str(BIG))
        self.assertLess(peak - base, RSS_BUDGET)

    def test_download_100mb_from_whoami(self):
        base = self._idle_rss(self.lb)
        t0 = time.monotonic()
        with HttpConn(self.lb.port, timeout=60) as c:
            c.send(build_request("GET", f"/download?size={BIG}"))
            r = c.read_response(discard_body=True)
        peak = hwm(self.lb.pid)
        self._report("download 100 MiB from whoami", time.monotonic() - t0, base, peak)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.framing, "length")
        self.assertEqual(r.body_length, int(r.header("Content-Length")))
        # whoami's header lines come first, then exactly BIG filler bytes.
        self.assertGreater(r.body_length, BIG)
        self.assertLess(r.body_length, BIG + 2000)
        self.assertLess(peak - base, RSS_BUDGET)

    def test_upload_100mb_exact_count(self):
        # A Python backend that counts every body byte (independent of whoami).
        def sink(c):
            while True:
                head = read_request_head(c)
                if not head:
                    return
                hdr, _, got_bytes = head.partition(b"\r\n\r\n")
                n = int(re.search(rb"(?i)content-length: *(\d+)", hdr).group(1))
                got = len(got_bytes)
                while got < n:
                    d = c.recv(1 << 20)
                    if not d:
                        return
                    got += len(d)
                msg = str(got).encode()
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(msg), msg))

        be = self.start_server(sink)
        lb = self.start_lb([be.port])
        base = self._idle_rss(lb)
        t0 = time.monotonic()
        r = self._upload(lb)
        peak = hwm(lb.pid)
        self._report("upload 100 MiB to a Python sink", time.monotonic() - t0, base, peak)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, str(BIG).encode())
        self.assertLess(peak - base, RSS_BUDGET)

    def test_download_100mb_exact_count(self):
        def source(c):
            while True:
                head = read_request_head(c)
                if not head:
                    return
                if head.startswith(b"GET /warm"):
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    continue
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
                block = b"d" * MB
                for _ in range(BIG // MB):
                    c.sendall(block)

        be = self.start_server(source)
        lb = self.start_lb([be.port])
        base = self._idle_rss(lb, warm_body=False)
        t0 = time.monotonic()
        with HttpConn(lb.port, timeout=60) as c:
            r = c.get("/big", discard_body=True)
            # And the connection is still in sync.
            r2 = c.get("/small")
        peak = hwm(lb.pid)
        self._report("download 100 MiB from a Python source", time.monotonic() - t0, base, peak)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body_length, BIG)
        self.assertEqual(r2.body_length, BIG)
        self.assertLess(peak - base, RSS_BUDGET)

    def test_stalled_reader_does_not_make_weir_buffer(self):
        # A client that stops reading: weir must apply backpressure, not buffer the rest.
        progress = {"sent": 0, "stalled": False}

        def source(c):
            head = read_request_head(c)
            while head.startswith(b"GET /warm"):
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                head = read_request_head(c)
            if not head:
                return
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
            block = memoryview(b"s" * MB)
            left = BIG
            c.settimeout(1.0)
            try:
                while left > 0:
                    try:
                        n = c.send(block[:min(MB, left)])
                    except socket.timeout:
                        # Nothing could go out for 1 s: backpressure has reached the server.
                        progress["stalled"] = True
                        c.settimeout(60)
                        continue
                    progress["sent"] += n
                    left -= n
            except OSError:
                pass

        be = self.start_server(source)
        lb = self.start_lb([be.port])
        base = self._idle_rss(lb, warm_body=False)
        with HttpConn(lb.port, timeout=60) as c:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            c.send(build_request("GET", "/stall"))
            # Backpressure reaches the server: its sends block once the kernel buffers on the way
            # and what weir is willing to hold are full (had weir buffered without bound, the
            # source would go on to send all 100 MB).
            t0 = time.monotonic()
            wait_until(lambda: progress["stalled"], 30, what="the server's sends to block")
            peak = hwm(lb.pid)
            sent = progress["sent"]
            r = c.read_response(discard_body=True)
        self._report(f"stalled reader, peak while stalled ({sent / MB:.0f} MB sent by the server)",
                     time.monotonic() - t0, base, peak)
        self.assertLess(sent, BIG // 2, "the server could send half the body to a client that reads nothing")
        self.assertLess(peak - base, RSS_BUDGET)
        self.assertEqual(r.body_length, BIG)

    def test_slow_upload_not_cut_by_response_timeout(self):
        # `response` runs from the request sent to the response head: a body that takes
        # longer than that to arrive is not a server timeout.
        lb = self.start_lb([self.w.port], backend_extra={"timeouts": {"response": "1s"}})
        with HttpConn(lb.port) as c:
            c.send(build_request("POST", "/slow-up", headers=[("Content-Length", "8")]))
            for i in range(8):
                time.sleep(0.25)  # the test: a body slower (2 s) than the response timeout (1 s)
                c.send(b"%d" % i)
            r = c.read_response("POST")
        self.assertWhoami(r, "bodies")
        self.assertEqual(r.whoami_field("Body-Length"), "8")


if __name__ == "__main__":
    unittest.main()
