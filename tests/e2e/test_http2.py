"""HTTP/2: ALPN over TLS and h2c with prior knowledge, real clients (curl, nghttp, h2load),
100 MB each way with bounded memory, multiplexing past a slow stream, flow control (a stalled
stream does not stall the connection nor make weir buffer), malformed requests reset without
reaching the backend, GOAWAY on SIGTERM and on reload with in-flight streams finishing."""

import signal
import threading
import unittest

from tlstest import (CANCEL, DATA, END_HEADERS, END_STREAM, HEADERS, MB, NO_ERROR, PROTOCOL_ERROR, H2Conn,
                     PeakRss, TlsTestCase, counting_backend_handler, curl, err_name, frame, h2_conn_blocks, h2load,
                     nghttp, S_INITIAL_WINDOW_SIZE, S_MAX_CONCURRENT_STREAMS, rst_frame, s_client, weir_alive,
                     window_update_frame)
from weirtest import BufferWatch, buffers, wait_until

BIG = 100_000_000


class Http2Test(TlsTestCase):
    def setUp(self):
        super().setUp()
        self.lb = self.start_tls_lb()

    def h2(self, tls=True, **kw) -> H2Conn:
        c = H2Conn(self.lb.https_port if tls else self.lb.plain_port, tls=tls, cafile=self.certs.ca if tls else None,
                   **kw)
        self.addCleanup(c.close)
        return c

    def active(self):
        return sum(s["active_requests"] for b in self.lb.backends()["backends"] for s in b["servers"])

    def idle_blocks(self):
        """Waits until weir holds no buffer block (what came before is over)."""
        return buffers(self.lb.admin_port)["in_use"] == 0

    def watch_blocks(self) -> BufferWatch:
        w = BufferWatch(self.lb.admin_port)
        self.addCleanup(w.close)
        return w

    def check_blocks(self, watch: BufferWatch, bound: int, what: str):
        peak = watch.stop()
        print(f"{what}: at most {peak} buffer blocks of {watch.block_bytes} B held ({watch.samples} samples; "
              f"designed bound {bound})")
        self.assertLessEqual(peak, bound, f"{what}: buffer blocks held")

    # ---- negotiation

    def test_curl_h2_over_tls(self):
        r = curl(self.lb.url("/h2?x=1"), "--http2", resolve=self.lb.resolve(), cacert=self.certs.ca,
                 verbose=True)
        self.assertEqual((r.rc, r.code, r.version), (0, 200, "2"), r.describe())
        self.assertEqual(r.whoami_name(), "web")
        self.assertIn("GET /h2?x=1 HTTP/1.1", r.text)
        self.assertIn(f"Host: a.test:{self.lb.https_port}", r.text)
        self.assertEqual(r.whoami_field("X-Forwarded-Proto"), "https")
        self.assertRegex(r.stderr, r"ALPN.*h2")
        # HTTP/1.1 on the same listener still works.
        r = curl(self.lb.url("/h1"), "--http1.1", resolve=self.lb.resolve(), cacert=self.certs.ca)
        self.assertEqual((r.code, r.version), (200, "1.1"), r.describe())

    def test_alpn_http11_only(self):
        lb = self.start_tls_lb(plain=False, tls_extra={"alpn": ["http/1.1"]})
        r = curl(lb.url("/"), "--http2", resolve=lb.resolve(), cacert=self.certs.ca)
        self.assertEqual((r.rc, r.code, r.version), (0, 200, "1.1"), r.describe())
        sc = s_client(lb.https_port, "-alpn", "h2", servername="a.test")
        self.assertTrue(sc.accepted, sc.tail())
        self.assertNotEqual(sc.alpn, "h2", sc.tail())

    def test_h2c_prior_knowledge(self):
        r = curl(self.lb.plain_url("/h2c"), "--http2-prior-knowledge")
        self.assertEqual((r.rc, r.code, r.version), (0, 200, "2"), r.describe())
        self.assertIn("GET /h2c HTTP/1.1", r.text)
        self.assertEqual(r.whoami_field("X-Forwarded-Proto"), "http")
        r = curl(self.lb.plain_url("/h1"), "--http1.1")
        self.assertEqual((r.code, r.version), (200, "1.1"), r.describe())

    def test_h2c_off_refuses_prior_knowledge(self):
        lb = self.start_tls_lb(h2c=False)
        r = curl(lb.plain_url("/"), "--http2-prior-knowledge", timeout=15)
        self.assertFalse(r.code == 200 and r.version == "2", f"h2c: false served HTTP/2: {r.describe()}")
        self.assertNotEqual(r.code, 200, r.describe())
        r = curl(lb.plain_url("/"), "--http1.1")
        self.assertEqual((r.code, r.version), (200, "1.1"), r.describe())
        weir_alive(self, lb)

    def test_upstream_framings_over_h2(self):
        """Chunked, close-delimited, HEAD and 204 answers from a server become proper h2
        responses (DATA up to END_STREAM; no body where HTTP says none)."""
        from weirtest import read_request_head

        def handler(c):
            while True:
                head = read_request_head(c)
                if not head:
                    return
                path = head.split(b" ")[1]
                if path == b"/chunked":
                    c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: yes\r\n\r\n"
                              b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
                elif path == b"/close":
                    c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"z" * 70000)
                    return
                elif path == b"/nocontent":
                    c.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
                else:
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n")
                    if not head.startswith(b"HEAD "):
                        c.sendall(b"hello there")

        srv = self.start_server(handler)
        lb = self.start_tls_lb(servers=[{"address": srv.address, "name": "scripted"}])
        for tls in (True, False):
            url = lb.url if tls else lb.plain_url
            opts = dict(resolve=lb.resolve(), cacert=self.certs.ca) if tls else {}
            flag = "--http2" if tls else "--http2-prior-knowledge"
            r = curl(url("/chunked"), flag, **opts)
            self.assertEqual((r.rc, r.code, r.version, r.body), (0, 200, "2", b"hello world"), r.describe())
            self.assertEqual(r.header("x-up"), "yes")
            self.assertIsNone(r.header("transfer-encoding"))
            self.assertEqual(r.trailers, [("x-trailer", "t")])  # a trailing HEADERS frame
            r = curl(url("/close"), flag, **opts)
            self.assertEqual((r.rc, r.code, r.body), (0, 200, b"z" * 70000), r.describe())
            r = curl(url("/nocontent"), flag, **opts)
            self.assertEqual((r.rc, r.code, r.body), (0, 204, b""), r.describe())
            r = curl(url("/cl"), flag, "-I", **opts)  # HEAD: curl prints the head, not a body
            self.assertEqual((r.rc, r.code), (0, 200), r.describe())
            self.assertEqual(r.header("content-length"), "11")
            r = curl(url("/cl"), flag, **opts)
            self.assertEqual((r.rc, r.body), (0, b"hello there"), r.describe())

    def test_nghttp(self):
        n = nghttp(f"https://127.0.0.1:{self.lb.https_port}/one")
        self.assertEqual((n.rc, n.statuses), (0, [200]), n.describe())
        self.assertEqual(n.negotiated, "h2", n.describe())
        for url in (f"https://127.0.0.1:{self.lb.https_port}/many", f"http://127.0.0.1:{self.lb.plain_port}/many"):
            with self.subTest(url=url):
                n = nghttp(url, "-m", "20")
                self.assertEqual(n.rc, 0, n.describe())
                self.assertEqual(n.statuses, [200] * 20, n.describe())
                self.assertEqual(n.connects, 1, n.describe())
                self.assertEqual(len(n.stream_ids), 20)

    def h2load_all_ok(self, url):
        before = self.lb.requests()
        h = h2load(url, "-n", "5000", "-c", "4", "-m", "50")
        summary = [line.strip() for line in h.out.splitlines() if line.startswith(("finished", "requests:"))]
        print(f"\nh2load {url}: " + " ".join(summary))
        self.assertEqual(h.rc, 0, h.describe())
        self.assertEqual(h.protocol, "h2" if url.startswith("https") else "h2c", h.describe())
        self.assertEqual((h.s2xx, h.succeeded, h.failed, h.errored), (5000, 5000, 0, 0), h.describe())
        self.assertEqual(self.lb.requests() - before, 5000, "the backend did not see every request")
        weir_alive(self, self.lb)

    def test_h2load_tls(self):
        self.h2load_all_ok(f"https://127.0.0.1:{self.lb.https_port}/load")

    def test_h2load_h2c(self):
        self.h2load_all_ok(f"http://127.0.0.1:{self.lb.plain_port}/load")

    def check_settings(self, lb, streams, stream_window, conn_window):
        c = H2Conn(lb.https_port, tls=True, cafile=self.certs.ca)
        self.addCleanup(c.close)
        self.assertTrue(c.wait_settings(), c.describe())
        self.assertEqual(c.peer_settings.get(S_MAX_CONCURRENT_STREAMS), streams, c.peer_settings)
        self.assertEqual(c.peer_settings.get(S_INITIAL_WINDOW_SIZE, 65535), stream_window, c.peer_settings)
        # The connection's receive window is raised with a WINDOW_UPDATE on stream 0.
        c.run_until(lambda: c.conn_send_window >= conn_window, 3)
        self.assertEqual(c.conn_send_window, conn_window, "weir's connection receive window")

    def test_settings_defaults(self):
        self.check_settings(self.lb, 100, 256 * 1024, MB)

    def test_settings_from_limits(self):
        lb = self.start_tls_lb(plain=False, limits={"h2_max_concurrent_streams": 20, "h2_stream_window": "128KiB",
                                                    "h2_connection_window": "4MiB"})
        self.check_settings(lb, 20, 128 * 1024, 4 * MB)

    # ---- bodies

    def test_download_100mb(self):
        curl(self.lb.url("/warm?size=1000000"), "--http2", resolve=self.lb.resolve(), cacert=self.certs.ca,
             out="/dev/null")
        peak = PeakRss(self.lb.pid, settled=self.idle_blocks)
        # One stream, no request body: the connection's 2 blocks and the server's in block.
        watch = self.watch_blocks()
        r = curl(self.lb.url(f"/big?size={BIG}"), "--http2", resolve=self.lb.resolve(), cacert=self.certs.ca,
                 out="/dev/null", timeout=300)
        self.check_blocks(watch, h2_conn_blocks(streams=1, uploading=0), "100 MB download over h2")
        self.assertEqual((r.rc, r.code, r.version), (0, 200, "2"), r.describe())
        self.assertGreater(r.size_download, BIG)
        self.assertLess(r.size_download, BIG + 2000)
        if r.header("content-length") is not None:
            self.assertEqual(int(r.header("content-length")), r.size_download)
        peak.check(self, what=f"100 MB download over h2 in {r.time_total:.1f}s")

    def test_upload_100mb(self):
        path = f"{self.tmp}/upload.bin"
        with open(path, "wb") as f:
            f.truncate(BIG)
        curl(self.lb.url("/warm"), "--http2", "--data-binary", "x" * 100000, resolve=self.lb.resolve(),
             cacert=self.certs.ca)
        peak = PeakRss(self.lb.pid, settled=self.idle_blocks)
        # One uploading stream: 2 + the server's in and out blocks + its 256 KiB window = 20.
        watch = self.watch_blocks()
        r = curl(self.lb.url("/upload"), "--http2", "-X", "POST", "-T", path, "-H", "Expect:",
                 resolve=self.lb.resolve(), cacert=self.certs.ca, timeout=300)
        self.check_blocks(watch, h2_conn_blocks(streams=1, uploading=1), "100 MB upload over h2")
        self.assertEqual((r.rc, r.code, r.version), (0, 200, "2"), r.describe())
        self.assertEqual(r.whoami_field("Body-Length"), str(BIG), r.text[:500])
        self.assertIn("POST /upload HTTP/1.1", r.text)
        peak.check(self, what=f"100 MB upload over h2 in {r.time_total:.1f}s")

    def test_request_body_larger_than_initial_window(self):
        c = self.h2()
        body = b"q" * 300_000  # beyond the 65,535-byte initial windows: weir must give window back
        s = c.response(c.request("/post", "POST", body=body), timeout=30)
        self.assertEqual(s.status, 200, repr(s))
        self.assertEqual(s.whoami_field("Body-Length"), str(len(body)), s.text[:400])

    # ---- multiplexing and flow control

    def test_slow_stream_does_not_delay_fast_ones(self):
        c = self.h2()
        slow = c.request("/slow?delay=2s")
        fast = [c.request(f"/fast/{i}") for i in range(10)]
        self.assertTrue(c.run_until(lambda: all(c.stream(s).done for s in [slow, *fast]), 20),
                        f"not all streams ended: {[c.stream(s) for s in [slow, *fast]]}")
        for s in fast:
            st = c.stream(s)
            self.assertEqual(st.status, 200, repr(st))
            self.assertLess(st.end_order, c.stream(slow).end_order, f"fast stream {s} ended after the slow one")
        self.assertEqual(c.stream(slow).status, 200)
        self.assertIn("GET /slow?delay=2s HTTP/1.1", c.stream(slow).text)

    def test_stalled_stream_window(self):
        c = self.h2()
        c.get("/warm?size=100000")
        peak = PeakRss(self.lb.pid)
        # The stalled stream and one other at a time: 2 + one in block each (weir holds one block
        # for the stalled stream; the rest of its 200 MB stays in the server's socket).
        watch = self.watch_blocks()
        big = c.request("/stall?size=200000000")
        c.hold.add(big)  # never a WINDOW_UPDATE for this stream (the connection's window is given back)
        st = c.stream(big)
        self.assertTrue(c.run_until(lambda: st.data_len >= 65535, 15), f"big stream got {st!r}")
        self.assertEqual(st.status, 200)
        # Other streams on the same connection go on.
        for i in range(20):
            s = c.get(f"/other/{i}?size=100000", timeout=15)
            self.assertEqual(s.status, 200, repr(s))
            self.assertGreater(s.data_len, 100000)
        # Time for weir to send or buffer what it should not: the wait is the test (nothing may
        # arrive meanwhile, and the blocks held stay within the design).
        c.drain(2.0)
        self.assertEqual(st.data_len, 65535, "weir sent beyond the stream's flow-control window")
        self.assertFalse(st.done)
        self.check_blocks(watch, h2_conn_blocks(streams=2, uploading=0), "a stalled stream and others")
        # Another connection is served normally.
        r = curl(self.lb.url("/elsewhere"), "--http2", resolve=self.lb.resolve(), cacert=self.certs.ca,
                 timeout=10)
        self.assertEqual((r.code, r.version), (200, "2"), r.describe())
        peak.check(self, what="a stream stalled on its window with 200 MB behind it")
        # Opening the window by 4 MiB lets exactly 4 MiB more through.
        c.send(window_update_frame(big, 4 * MB))
        self.assertTrue(c.run_until(lambda: st.data_len >= 65535 + 4 * MB, 20), repr(st))
        c.drain(0.5)
        self.assertEqual(st.data_len, 65535 + 4 * MB, "weir sent beyond the stream's flow-control window")
        self.assertFalse(st.done)

    # ---- malformed requests

    def start_counting(self):
        stats, lock = {}, threading.Lock()
        be = self.start_server(counting_backend_handler(stats, lock))
        lb = self.start_tls_lb([{"address": be.address, "name": "count"}])
        return lb, stats, lock

    def test_malformed_requests_reset(self):
        lb, stats, lock = self.start_counting()
        for tls in (False, True):
            port = lb.https_port if tls else lb.plain_port
            scheme = "https" if tls else "http"
            auth = f"a.test:{port}"
            base = [(":method", "GET"), (":scheme", scheme), (":authority", auth), (":path", "/bad")]
            cases = {
                "uppercase header name": base + [("X-Upper", "v")],
                "connection: keep-alive": base + [("connection", "keep-alive")],
                "keep-alive header": base + [("keep-alive", "timeout=5")],
                "proxy-connection": base + [("proxy-connection", "keep-alive")],
                "transfer-encoding: chunked": base + [("transfer-encoding", "chunked")],
                "upgrade: h2c": base + [("upgrade", "h2c")],
                "te: gzip": base + [("te", "gzip")],
                "missing :path": base[:3],
                "missing :method": base[1:],
                "pseudo-header after a regular one": base[:3] + [("user-agent", "x"), (":path", "/bad")],
                "unknown pseudo-header": base + [(":foo", "bar")],
                "duplicate :path": base + [(":path", "/again")],
                "CR LF in a value": base + [("x-smuggle", "a\r\nX-Injected: 1")],
                "NUL in a value": base + [("x-nul", "a\x00b")],
                "space in a name": base + [("x bad", "v")],
                "empty :path": base[:3] + [(":path", "")],
            }
            for what, headers in cases.items():
                with self.subTest(tls=tls, case=what):
                    self.assertRejected(lb, port, tls, stats, lock, what, headers)
            with self.subTest(tls=tls, case="content-length 10, 5 bytes of DATA"):
                self.assertRejected(lb, port, tls, stats, lock, "content-length mismatch",
                                    [(":method", "POST"), (":scheme", scheme), (":authority", auth),
                                     (":path", "/cl"), ("content-length", "10")], body=b"12345")
        weir_alive(self, lb)

    def assertRejected(self, lb, port, tls, stats, lock, what, headers, body=None):
        with lock:
            heads0, complete0 = stats.get("heads", 0), stats.get("complete", 0)
        c = H2Conn(port, tls=tls, cafile=self.certs.ca if tls else None)
        with c:
            self.assertTrue(c.wait_settings(), f"no SETTINGS from weir: {c.describe()}")
            sid = c.new_sid()
            block = c.encode(headers)
            if body is None:
                c.send(frame(HEADERS, END_STREAM | END_HEADERS, sid, block))
            else:
                c.send(frame(HEADERS, END_HEADERS, sid, block) + frame(DATA, END_STREAM, sid, body))
            st = c.stream(sid)
            c.run_until(lambda: st.done or c.goaway is not None or c.closed, 10)
            print(f"\n  {what} ({'TLS' if tls else 'h2c'}): " +
                  (f"RST_STREAM {err_name(st.reset)}" if st.reset is not None else f"status {st.status}") +
                  (f", GOAWAY {err_name(c.goaway[1])}" if c.goaway else ""), end="")
            ok_reset = st.reset == PROTOCOL_ERROR
            ok_status = st.status is not None and 400 <= st.status < 500
            ok_goaway = c.goaway is not None and c.goaway[1] != NO_ERROR
            self.assertTrue(ok_reset or ok_status or ok_goaway,
                            f"{what}: expected RST_STREAM(PROTOCOL_ERROR) (or a 4xx, or GOAWAY with an "
                            f"error); got {st!r}, {c.describe()}")
            if not ok_goaway and not c.closed:
                # A stream error: the connection goes on.
                good = c.get("/good", timeout=10)
                self.assertEqual(good.status, 200, f"after {what}: {good!r} {c.describe()}")
        with lock:
            heads, complete = stats.get("heads", 0), stats.get("complete", 0)
        extra = 1 if (not ok_goaway and not c.closed) else 0
        if body is None:
            self.assertEqual(heads - heads0, extra,
                             f"{what}: the request reached the backend: {stats.get('lines', [])[-2:]}")
        self.assertEqual(complete - complete0, extra, f"{what}: a whole request reached the backend")

    def test_cancelled_stream_cancels_upstream(self):
        c = self.h2()
        sid = c.request("/cancel?delay=3s")
        wait_until(lambda: self.active() == 1, 10, what="the request to reach the backend")
        c.send(rst_frame(sid, CANCEL))
        wait_until(lambda: self.active() == 0, 5, what="weir to drop the cancelled upstream request")
        self.assertEqual(c.get("/next").status, 200)

    # ---- shutdown and reload

    def test_sigterm_goaway_and_in_flight_stream_completes(self):
        c = self.h2()
        self.assertEqual(c.get("/warm").status, 200)
        sid = c.request("/slow?delay=2s")
        wait_until(lambda: self.active() == 1, 10, what="the slow stream in flight")
        self.lb.proc.send_signal(signal.SIGTERM)
        st = c.response(sid, 20)
        self.assertEqual(st.status, 200, f"{st!r} {c.describe()}")
        self.assertIn("GET /slow?delay=2s", st.text)
        self.assertTrue(c.run_until(lambda: c.goaway is not None, 5), f"no GOAWAY on SIGTERM: {c.describe()}")
        last, code, _ = c.goaway
        self.assertEqual(code, NO_ERROR, f"GOAWAY {err_name(code)}")
        self.assertGreaterEqual(last, sid, "GOAWAY's last stream id excludes the stream in flight")
        self.assertTrue(c.wait_closed(10), "weir kept the connection open after GOAWAY and the last stream")
        self.assertEqual(self.lb.proc.wait(20), 0, self.lb.proc.stderr()[-3000:])

    def test_reload_goaway_and_open_streams_finish(self):
        for tls in (True, False):
            with self.subTest(tls=tls):
                c = self.h2(tls=tls)
                self.assertEqual(c.get("/warm").status, 200)
                sids = [c.request(f"/slow/{i}?delay=2s") for i in range(3)]
                wait_until(lambda: self.active() == 3, 10, what="three streams in flight")
                self.assertTrue(self.lb.reload(), self.lb.proc.stderr()[-2000:])
                self.assertTrue(c.run_until(lambda: c.goaway is not None, 10), f"no GOAWAY on reload: {c.describe()}")
                for sid in sids:
                    st = c.response(sid, 20)
                    self.assertEqual(st.status, 200, f"{st!r} {c.describe()}")
                self.assertEqual(c.goaway[1], NO_ERROR)
                self.assertGreaterEqual(c.goaway[0], max(sids))
                # A new connection gets the new config.
                n = self.h2(tls=tls)
                self.assertEqual(n.get("/new").status, 200)
        weir_alive(self, self.lb)


if __name__ == "__main__":
    unittest.main()
