"""HTTP/3 over QUIC (`http3: true` on a TLS listener: the same port number over UDP): real
requests with gtlsclient (ngtcp2's HTTP/3 client) through routing, header rules and the access
log; Alt-Svc on the TCP responses; `weir check`; the transport parameters from `limits:`, the
stream limit held and quic_idle_timeout; 100 MiB each way with bounded memory, and a 50 MiB upload
held behind the receive window while the backend stalls; hostile datagrams (garbage, truncated
and oversized headers, short Initials, unknown versions answered with Version Negotiation,
unknown connection IDs); Initial floods from many spoofed 127/8 addresses answered with Retry
(always with quic_retry_threshold 0, past the threshold otherwise), a real client following the
Retry meanwhile; SIGTERM with a request in flight; clients that migrate to a new port mid-request
(their packets handed to the worker that owns the connection); a binary upgrade (SIGUSR2) whose
new process serves HTTP/3. Every figure is printed.

Needs gtlsclient (Debian's ngtcp2-client) and python3-cryptography; under CI=true it fails
rather than skips without them."""

import os
import random
import re
import signal
import subprocess
import threading
import time
import unittest

import quictest as q
from quictest import Http3Case
from tlstest import MB, RSS_BUDGET, PeakRss, curl, weir_alive
from weirtest import BufferWatch, buffers, free_port, wait_until

BIG = 100 * MB  # 104857600


class Http3BasicTest(Http3Case):
    def test_get_through_weir(self):
        lb = self.start_h3_lb()
        before = lb.metrics()
        r = self.h3(lb, "/h3?x=1")
        self.assertH3Ok(r, 1)
        s = r.first
        print(f"\nHTTP/3 GET: {r!r}; response fields {s.headers}")
        self.assertEqual(s.whoami_name(), "web", s.text[:300])
        self.assertIn("GET /h3?x=1 HTTP/1.1", s.text)
        self.assertEqual(s.whoami_field("X-Forwarded-Proto"), "https", s.text)
        self.assertEqual(s.whoami_field("Host"), f"a.test:{lb.https_port}", s.text)
        after = lb.metrics()
        moved = {k: after.get(k) - before.get(k) for k in
                 ("weir_http3_connections_total", "weir_quic_retries_total", "weir_quic_packets_dropped_total")}
        print(f"metrics moved: {moved}; weir_quic_connections_open {after.get('weir_quic_connections_open')}")
        for name in ("weir_http3_connections_total", "weir_quic_connections_open", "weir_quic_retries_total",
                     "weir_quic_stateless_resets_total", "weir_quic_version_negotiations_total",
                     "weir_quic_packets_dropped_total"):
            self.assertTrue(after.has(name), f"{name} missing from /metrics")
        self.assertEqual(moved["weir_http3_connections_total"], 1)
        self.assertEqual(lb.requests(), 1, "the backend's request count")
        # The client is gone (it closed the connection): the gauge comes back to 0.
        wait_until(lambda: self.m(lb, "weir_quic_connections_open") == 0, 10,
                   what="weir_quic_connections_open back to 0 after the client closed")

    def test_routes_and_many_requests_on_one_connection(self):
        a, b = self.start_whoami("a"), self.start_whoami("b")
        lb = self.start_h3_lb(backends=[{"name": "a", "servers": [{"address": a.address}]},
                                        {"name": "b", "servers": [{"address": b.address}]},
                                        {"name": "c", "servers": [{"address": a.address}]}],
                              routes=[{"match": {"host": "c.test"}, "backend": "c"},
                                      {"match": {"path_prefix": "/a/"}, "backend": "a",
                                       "request_headers": {"set": {"X-Via-H3": "yes"}},
                                       "response_headers": {"add": {"X-Served-By": "weir"}}},
                                      {"match": {"path_prefix": "/b/"}, "backend": "b"}])
        c0 = self.m(lb, "weir_http3_connections_total")
        paths = [f"/{'ab'[i % 2]}/{i}" for i in range(12)]
        r = self.h3(lb, *paths)
        self.assertH3Ok(r, 12)
        for path, s in zip(paths, r.ordered):
            want = path[1]
            self.assertEqual(s.whoami_name(), want, f"{path} reached {s.whoami_name()}: {s.text[:200]}")
            self.assertIn(f"GET {path} HTTP/1.1", s.text)
            if want == "a":  # the route's header rules
                self.assertEqual(s.whoami_field("X-Via-H3"), "yes", s.text)
                self.assertEqual(s.header_all("x-served-by"), ["weir"], s.headers)
            else:
                self.assertIsNone(s.whoami_field("X-Via-H3"), s.text)
                self.assertIsNone(s.header("x-served-by"), s.headers)
        conns = self.m(lb, "weir_http3_connections_total") - c0
        print(f"\n12 requests on one HTTP/3 connection in {r.elapsed:.2f}s: "
              f"{[s.whoami_name() for s in r.ordered]}, {conns:.0f} QUIC connection(s) counted")
        self.assertEqual(conns, 1)
        # -n: the same URI over and over, on one connection.
        r = self.h3(lb, "/b/again", nstreams=30)
        self.assertH3Ok(r, 30)
        self.assertEqual({s.whoami_name() for s in r.ordered}, {"b"})
        # By host (:authority): c.test goes to backend c (whoami "a" behind it).
        r = self.h3(lb, "/b/x", authority=f"c.test:{lb.https_port}")
        self.assertH3Ok(r, 1)
        self.assertEqual(r.first.whoami_field("Host"), f"c.test:{lb.https_port}")
        got = {x["name"]: sum(s["requests_total"] for s in x["servers"]) for x in lb.backends()["backends"]}
        print(f"requests per backend: {got}")
        self.assertEqual(got, {"a": 6, "b": 36, "c": 1})

    def test_sni_names(self):
        lb = self.start_h3_lb()
        for sni in ("a.test", "b.test"):
            r = self.h3(lb, f"/sni/{sni}", sni=sni)
            self.assertH3Ok(r, 1)
            self.assertEqual(r.first.whoami_field("Host"), f"{sni}:{lb.https_port}")
        print("\nSNI a.test and b.test both served over HTTP/3 (gtlsclient does not show the certificate)")

    def test_alt_svc_on_tcp_responses(self):
        lb = self.start_h3_lb()
        want = f'h3=":{lb.https_port}"; ma=86400'
        for flag in ("--http1.1", "--http2"):
            r = curl(lb.url("/alt"), flag, resolve=lb.resolve(), cacert=self.certs.ca)
            self.assertEqual((r.rc, r.code), (0, 200), r.describe())
            print(f"\nHTTPS {flag[2:]}: Alt-Svc {r.header_all('alt-svc')}")
            self.assertEqual(r.header_all("alt-svc"), [want], f"{flag}: {r.headers}")
        # The plain listener of the same weir has no http3: no Alt-Svc.
        r = curl(lb.plain_url("/alt"), "--http1.1")
        self.assertEqual(r.code, 200, r.describe())
        self.assertIsNone(r.header("alt-svc"), f"plain listener: {r.headers}")
        # A TLS listener without http3: no Alt-Svc.
        other = self.start_h3_lb(http3=False, plain=False)
        r = curl(other.url("/alt"), "--http2", resolve=other.resolve(), cacert=self.certs.ca)
        self.assertEqual(r.code, 200, r.describe())
        self.assertIsNone(r.header("alt-svc"), f"TLS listener without http3: {r.headers}")
        # And nothing answers HTTP/3 there.
        r = q.gtls(other.https_port, "/none", timeout=25)
        print(f"HTTP/3 to a listener without http3: {r!r}")
        self.assertFalse(r.handshake, r.describe())
        self.assertEqual([s.status for s in r.ordered if s.status is not None], [], r.describe())

    def test_reload_switches_http3_off_not_on(self):
        # Off by SIGHUP: no more Alt-Svc, no new HTTP/3 connection. On by SIGHUP: refused (the
        # UDP sockets are made at start), the running config stays.
        lb = self.start_h3_lb()
        self.assertH3Ok(self.h3(lb, "/on"), 1)
        https = next(l for l in lb.cfg["listeners"] if l.get("http3"))
        https["http3"] = False
        self.assertTrue(lb.weir.reload(lb.cfg), lb.proc.stderr()[-2000:])
        r = curl(lb.url("/off"), "--http2", resolve=lb.resolve(), cacert=self.certs.ca)
        self.assertEqual(r.code, 200, r.describe())
        self.assertIsNone(r.header("alt-svc"), f"http3 switched off: {r.headers}")
        r = q.gtls(lb.https_port, "/off", timeout=25)
        print(f"\nHTTP/3 after a reload switched it off: {r!r}")
        self.assertEqual([s.status for s in r.ordered if s.status is not None], [], r.describe())

        other = self.start_h3_lb(http3=False, plain=False)
        https = next(l for l in other.cfg["listeners"] if "tls" in l)
        https["http3"] = True
        self.assertFalse(other.weir.reload(other.cfg), "a reload switching http3 on was applied")
        self.assertRegex(other.proc.stderr(), r"http3 on .* needs its UDP sockets, made at start")
        r = curl(other.url("/still"), "--http2", resolve=other.resolve(), cacert=self.certs.ca)
        self.assertEqual(r.code, 200, r.describe())
        self.assertIsNone(r.header("alt-svc"), f"refused reload: {r.headers}")

    def test_check_rejects_http3_without_tls(self):
        text = ("listeners:\n"
                "  - name: web\n"
                "    listen: 127.0.0.1:8080\n"
                "    http3: true\n"
                "    backend: web\n"
                "backends:\n"
                "  - name: web\n"
                "    servers:\n"
                "      - address: 127.0.0.1:9001\n")
        path = self.write_config(text, "h3-no-tls.yaml")
        p = self.run_weir("check", "-c", path)
        err = p.stderr.decode()
        print(f"\nweir check: exit {p.returncode}: {err.strip()}")
        self.assertEqual(p.returncode, 1, err)
        m = re.search(rf"^{re.escape(path)}:(\d+):(\d+): (.*)$", err, re.M)
        self.assertIsNotNone(m, f"no FILE:LINE:COL error: {err}")
        self.assertEqual(int(m.group(1)), 4, err)
        self.assertIn("http3", m.group(3))
        self.assertIn("tls", m.group(3))
        # With tls it passes.
        good = self.tls_config([9001], https_port=free_port(), plain_port=None, admin_port=free_port(),
                               https_extra={"http3": True},
                               limits={"h3_max_concurrent_streams": 10, "h3_stream_window": "64KiB",
                                       "h3_connection_window": "512KiB", "quic_idle_timeout": "5s",
                                       "quic_retry_threshold": 0})
        p = self.run_weir("check", "-c", self.write_config(good, "h3-good.yaml"))
        self.assertEqual(p.returncode, 0, p.stderr.decode())

    def test_access_log_proto(self):
        path = os.path.join(self.tmp, "access.log")
        lb = self.start_h3_lb(top_extra={"access_log": {"path": path}})
        r = self.h3(lb, "/logged?q=1")
        self.assertH3Ok(r, 1)

        def line():
            if not os.path.exists(path):
                return None
            with open(path) as f:
                return next((ln for ln in f if "/logged?q=1" in ln), None)

        ln = wait_until(line, 10, what="the access log line of the HTTP/3 request")
        print(f"\naccess log: {ln.strip()}")
        import json
        rec = json.loads(ln)
        self.assertEqual((rec["proto"], rec["method"], rec["status"], rec["listener"]),
                         ("HTTP/3", "GET", 200, "https"), ln)
        self.assertTrue(rec["host"].startswith("a.test"), ln)
        self.assertRegex(rec["client"], r"^127\.0\.0\.1:\d+$")
        self.assertIsNotNone(rec["tls"], ln)

    def test_transport_parameters_and_stream_limit(self):
        be = self.start_whoami("slow")
        lb = self.start_h3_lb([{"address": be.address, "name": "slow-1"}],
                              limits={"h3_max_concurrent_streams": 5, "h3_stream_window": "128KiB",
                                      "h3_connection_window": "512KiB", "quic_idle_timeout": "7s"})
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    act = sum(s["active_requests"] for b in lb.backends()["backends"] for s in b["servers"])
                    peak[0] = max(peak[0], act)
                except Exception:  # noqa: BLE001 - sampling only
                    pass
                stop.wait(0.02)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            r = self.h3(lb, "/slow?delay=300ms", nstreams=20, timeout=60)
        finally:
            stop.set()
            t.join(5)
        tp = {}
        for ln in r.lines:
            mm = re.search(r"cry remote transport_parameters (\w+)=(\S+)", ln)
            if mm:
                tp[mm.group(1)] = mm.group(2)
        print(f"\n20 requests with h3_max_concurrent_streams 5: {r!r} in {r.elapsed:.2f}s; "
              f"at most {peak[0]} at the backend at once; transport parameters {tp}")
        self.assertH3Ok(r, 20)
        self.assertLessEqual(peak[0], 5, "more requests in flight than h3_max_concurrent_streams")
        if tp:
            self.assertEqual(tp.get("initial_max_streams_bidi"), "5", tp)
            self.assertEqual(tp.get("initial_max_stream_data_bidi_remote"), str(128 * 1024), tp)
            self.assertEqual(tp.get("initial_max_data"), str(512 * 1024), tp)
            self.assertEqual(tp.get("max_idle_timeout"), "7000", tp)  # gtlsclient prints milliseconds

    def test_sigterm_lets_in_flight_request_finish(self):
        lb = self.start_h3_lb()
        self.assertH3Ok(self.h3(lb, "/warm"), 1)
        out = {}

        def slow():
            out["r"] = q.gtls(lb.https_port, "/slow?delay=2s", timeout=30, in_thread=True)

        t = threading.Thread(target=slow, daemon=True)
        t.start()
        wait_until(lambda: sum(s["active_requests"] for b in lb.backends()["backends"] for s in b["servers"]) == 1,
                   15, what="the slow HTTP/3 request at the backend")
        t0 = time.monotonic()
        lb.proc.send_signal(signal.SIGTERM)
        t.join(40)
        r = out.get("r")
        self.assertIsNotNone(r, "gtlsclient did not finish")
        code = lb.proc.wait(30)
        print(f"\nSIGTERM with an HTTP/3 request in flight: {r!r}; weir exited {code} "
              f"{time.monotonic() - t0:.1f}s after SIGTERM; closes seen {r.closes[-2:]}")
        self.assertH3Ok(r, 1)
        self.assertIn("GET /slow?delay=2s HTTP/1.1", r.first.text)
        self.assertEqual(code, 0, lb.proc.stderr()[-3000:])


    def test_migration_reaches_the_owning_worker(self):
        # The client moves to a new local port mid-request (connection migration): its packets
        # may now land on the other worker's socket, which hands them to the worker that owns
        # the connection (the first byte of weir's connection IDs names it).
        lb = self.start_h3_lb(workers=4)
        results = []
        for _ in range(8):
            results.append(q.gtls(lb.https_port, "/move?delay=800ms", timeout=30,
                                  extra=["--change-local-addr=200ms"]))
        forwarded = self.m(lb, "weir_quic_packets_forwarded_total")
        print(f"\nconnection migration, 4 workers, 8 clients changing their port mid-request: statuses "
              f"{[r.statuses for r in results]}; datagrams handed to the owning worker: {forwarded:.0f}")
        for r in results:
            self.assertH3Ok(r, 1)
        # 8 moves over 4 sockets: that none lands elsewhere has a chance of (1/4)^8.
        self.assertGreater(forwarded, 0, "no migrated packet reached another worker's socket")

    def test_binary_upgrade_serves_http3(self):
        # SIGUSR2: the new process joins the UDP port's SO_REUSEPORT group with its own sockets
        # and serves HTTP/3; the old one closes its QUIC connections and exits.
        lb = self.start_h3_lb(workers=2)
        self.assertH3Ok(self.h3(lb, "/before"), 1)
        old = lb.proc
        old_pid = lb.pid
        old.send_signal(signal.SIGUSR2)
        text = old.wait_log(r"upgrade: the new process \(pid \d+\) is ready", 1, 60)
        pid = int(re.search(r"upgrade: the new process \(pid (\d+)\) is ready", text).group(1))

        def stop_new():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            def gone():
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        return f.read().split()[2] == "Z"
                except FileNotFoundError:
                    return True
            wait_until(gone, 20, what="the new weir to stop")
        self.addCleanup(stop_new)
        code = old.wait(30)
        statuses = []
        for i in range(6):
            r = self.h3(lb, f"/after-{i}")
            self.assertH3Ok(r, 1)
            statuses += r.statuses
        served = self.m(lb, "weir_http3_connections_total")
        print(f"\nbinary upgrade with HTTP/3: old pid {old_pid} exited {code}; new pid {pid} answered "
              f"{statuses} over HTTP/3 and counts {served:.0f} QUIC connections")
        self.assertEqual(code, 0, old.stderr()[-3000:])
        self.assertGreaterEqual(served, 6, "the new process did not serve the HTTP/3 requests")

    def test_session_resumption(self):
        # A returning client presents the session ticket of its first connection: the handshake
        # skips the certificate (fewer CRYPTO bytes from weir). No 0-RTT.
        lb = self.start_h3_lb()
        sess, tp = os.path.join(self.tmp, "session.pem"), os.path.join(self.tmp, "tp.bin")

        def crypto_bytes(path: str) -> tuple[int, bool]:
            cmd = [q.GTLSCLIENT, "--no-http-dump", "--exit-on-all-streams-close", "--timeout=10s",
                   f"--session-file={sess}", f"--tp-file={tp}", "--disable-early-data", "--sni=a.test",
                   "127.0.0.1", str(lb.https_port), f"https://a.test:{lb.https_port}{path}"]
            p = subprocess.run(cmd, capture_output=True, timeout=30)
            out = p.stderr.decode(errors="replace")
            total = sum(int(m) for m in re.findall(r"frm rx \d+ \w+ CRYPTO\(0x06\) offset=\d+ len=(\d+)", out))
            return total, "[:status: 200]" in out

        first, ok1 = crypto_bytes("/first")
        second, ok2 = crypto_bytes("/again")
        print(f"\nTLS handshake bytes from weir: first connection {first}, resumed {second}")
        self.assertTrue(ok1 and ok2, "a request failed")
        self.assertTrue(os.path.getsize(sess) > 0, "no session ticket was received")
        self.assertLess(second, first - 200, "the second handshake still carried the certificate")

    def test_listener_idle_timeout_sends_goaway(self):
        # A client that keeps its connection alive (QUIC PINGs) but opens no request for the
        # listener's idle timeout gets GOAWAY, and the connection closes.
        lb = self.start_h3_lb(https_extra={"timeouts": {"idle": "1s"}})
        r = self.h3(lb, "/idle", exit_on_close=False, idle_timeout="60s", timeout=40)
        print(f"\nlistener idle timeout 1s, a client that stays (quic_idle_timeout 30s): {r!r}")
        self.assertEqual(r.statuses, [200], r.describe())
        self.assertFalse(r.timed_out, f"the connection outlived the listener's idle timeout:\n{r.describe()}")
        self.assertLess(r.elapsed, 10, r.describe())
        # Forgotten after its closing period (three PTOs).
        wait_until(lambda: self.m(lb, "weir_quic_connections_open") == 0, 10,
                   what="the closed connection to be forgotten")

    def test_idle_timeout_closes_connection(self):
        lb = self.start_h3_lb(limits={"quic_idle_timeout": "2s"})
        r = self.h3(lb, "/idle", exit_on_close=False, idle_timeout="60s", timeout=40)
        print(f"\nquic_idle_timeout 2s, a client that stays (its own idle timeout 60 s): {r!r}")
        self.assertEqual(r.statuses, [200], r.describe())
        self.assertFalse(r.timed_out, f"the connection outlived quic_idle_timeout by far:\n{r.describe()}")
        self.assertLess(r.elapsed, 30, r.describe())
        self.assertEqual(self.m(lb, "weir_quic_connections_open"), 0)


class Http3BulkTest(Http3Case):
    """100 MiB each way through HTTP/3 with weir's memory bounded."""

    def setUp(self):
        super().setUp()
        self.lb = self.start_h3_lb()

    def idle(self):
        return buffers(self.lb.admin_port)["in_use"] == 0 and self.m(self.lb, "weir_quic_connections_open") == 0

    def test_download_100mib(self):
        self.assertH3Ok(self.h3(self.lb, "/warm?size=1000000", download=os.path.join(self.tmp, "warm")), 1)
        peak = PeakRss(self.lb.pid, settled=self.idle)
        watch = BufferWatch(self.lb.admin_port)
        self.addCleanup(watch.close)
        dl = os.path.join(self.tmp, "dl")
        r = self.h3(self.lb, f"/big?size={BIG}", download=dl, timeout=400)
        blocks = watch.stop()
        self.assertH3Ok(r, 1)
        s = r.first
        self.assertIsNotNone(s.file, f"no downloaded file in {dl}: {os.listdir(dl)}\n{r.describe()}")
        size = os.path.getsize(s.file)
        with open(s.file, "rb") as f:
            head = f.read(4096)
            cut = head.index(b"Body-Length") if b"Body-Length" in head else None
            text_end = head.rfind(b"\n") + 1  # whoami's text ends with a newline, the filler is 'x's
            text = head[:text_end]
            f.seek(text_end)
            bad = 0
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                bad += len(chunk) - chunk.count(b"x")
        mibs = size / MB / r.elapsed if r.elapsed else 0
        print(f"\n100 MiB download over HTTP/3: {size} bytes in {r.elapsed:.1f}s ({mibs:.1f} MiB/s); "
              f"at most {blocks} buffer blocks of {watch.block_bytes} B held ({watch.samples} samples)")
        self.assertIsNone(cut)
        self.assertTrue(text.startswith(b"Name: web\n"), text[:200])
        self.assertEqual(size, len(text) + BIG, f"downloaded {size} bytes, expected whoami's {len(text)}-byte "
                                                 f"text + {BIG} filler bytes")
        self.assertEqual(bad, 0, "bytes other than whoami's 'x' filler in the body")
        cl = s.header("content-length")
        if cl is not None:
            self.assertEqual(int(cl), size)
        peak.check(self, RSS_BUDGET, what=f"100 MiB download over HTTP/3 in {r.elapsed:.1f}s")

    def test_upload_100mib(self):
        path = os.path.join(self.tmp, "upload.bin")
        with open(path, "wb") as f:
            f.truncate(BIG)
        small = os.path.join(self.tmp, "small.bin")
        with open(small, "wb") as f:
            f.write(b"w" * 100000)
        self.assertH3Ok(self.h3(self.lb, "/warm", data=small), 1)
        peak = PeakRss(self.lb.pid, settled=self.idle)
        watch = BufferWatch(self.lb.admin_port)
        self.addCleanup(watch.close)
        r = self.h3(self.lb, "/upload", data=path, timeout=400)
        blocks = watch.stop()
        mibs = BIG / MB / r.elapsed if r.elapsed else 0
        print(f"\n100 MiB upload over HTTP/3: {r!r} in {r.elapsed:.1f}s ({mibs:.1f} MiB/s); "
              f"at most {blocks} buffer blocks of {watch.block_bytes} B held ({watch.samples} samples)")
        self.assertH3Ok(r, 1)
        s = r.first
        self.assertIn("POST /upload HTTP/1.1", s.text)
        self.assertEqual(s.whoami_field("Body-Length"), str(BIG), s.text[:600])
        peak.check(self, RSS_BUDGET, what=f"100 MiB upload over HTTP/3 in {r.elapsed:.1f}s")


    def test_stalled_backend_bounds_upload_buffering(self):
        """A backend that reads the request head, then nothing for 3 s: the client's 50 MiB
        wait behind the stream's receive window, not in weir; then the backend reads it all."""
        release = threading.Event()
        seen = {}

        def handler(c):
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = c.recv(65536)
                if not chunk:
                    return
                head += chunk
            head, _, rest = head.partition(b"\r\n\r\n")
            seen["head"] = head.decode("latin-1")
            release.wait(30)
            c.settimeout(30)
            n = len(rest)
            m = re.search(r"(?im)^content-length:\s*(\d+)", seen["head"])
            if m:
                want = int(m.group(1))
                while n < want:
                    chunk = c.recv(1 << 20)
                    if not chunk:
                        break
                    n += len(chunk)
            else:  # chunked: count the raw bytes up to the last chunk
                data = rest
                while not data.endswith(b"0\r\n\r\n"):
                    chunk = c.recv(1 << 20)
                    if not chunk:
                        break
                    data = data[-16:] + chunk
                    n += len(chunk)
            seen["bytes"] = n
            body = f"received {n}\n".encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

        srv = self.start_server(handler)
        self.addCleanup(release.set)
        lb = self.start_h3_lb([{"address": srv.address, "name": "stalled"}])
        path = os.path.join(self.tmp, "fifty.bin")
        with open(path, "wb") as f:
            f.truncate(50 * MB)
        peak = PeakRss(lb.pid)
        watch = BufferWatch(lb.admin_port)
        self.addCleanup(watch.close)
        out = {}

        def upload():
            out["r"] = q.gtls(lb.https_port, "/stalled", data=path, timeout=90, in_thread=True)

        t = threading.Thread(target=upload, daemon=True)
        t.start()
        wait_until(lambda: "head" in seen, 15, what="the request head at the stalled backend")
        time.sleep(3)  # the stall: what weir holds meanwhile is the test
        stalled_blocks = watch.peak
        stalled_growth = peak.growth()
        release.set()
        t.join(100)
        blocks = watch.stop()
        r = out.get("r")
        self.assertIsNotNone(r, "gtlsclient did not finish")
        print(f"\n50 MiB upload to a backend stalled 3 s: {r!r}; backend got {seen.get('bytes')} body bytes; "
              f"while stalled at most {stalled_blocks} buffer blocks, RSS growth {stalled_growth / MB:.1f} MiB; "
              f"overall at most {blocks} blocks of {watch.block_bytes} B")
        self.assertH3Ok(r, 1)
        self.assertEqual(seen.get("bytes"), 50 * MB, seen.get("head"))
        self.assertEqual(r.first.text, f"received {50 * MB}\n")
        self.assertLess(stalled_growth, RSS_BUDGET, "weir's RSS grew while the backend stalled")
        peak.check(self, RSS_BUDGET, what="50 MiB upload to a stalled backend over HTTP/3")

class Http3HostileTest(Http3Case):
    """Datagrams no client would send."""

    def test_hostile_datagrams(self):
        lb = self.start_h3_lb(workers=2)
        port = lb.https_port
        rng = random.Random(0x51C)
        report = {}

        counters = ("weir_quic_packets_dropped_total", "weir_quic_version_negotiations_total",
                    "weir_quic_stateless_resets_total", "weir_quic_retries_total", "weir_http3_connections_total")
        unaccounted = []

        def probe(what: str, datagrams, source: str):
            """Sends datagrams from source, collects the answers; checks that weir accounted for
            every datagram (dropped, or answered with VN / reset / Retry)."""
            m0 = lb.metrics()
            p = q.UdpProbe(source)
            self.addCleanup(p.close)
            sent = 0
            for i, d in enumerate(datagrams):
                p.send(port, d)
                sent += len(d)
                if i % 50 == 49:
                    p.drain()
                    time.sleep(0.005)
            got = [q.Parsed(x) for x in p.collect(quiet=0.4, limit=5)]
            kinds = {}
            for g in got:
                kinds[g.kind] = kinds.get(g.kind, 0) + 1
            m1 = lb.metrics()
            delta = {k.replace("weir_quic_", "").replace("weir_", "").replace("_total", ""): m1.get(k) - m0.get(k)
                     for k in counters}
            report[what] = (len(datagrams), sent, kinds, sum(len(g.data) for g in got), delta)
            accounted = (delta["packets_dropped"] + delta["version_negotiations"] + delta["stateless_resets"] +
                         delta["retries"])
            # (A connection may be created for a datagram whose header passes, then closed when it
            # does not decrypt: that datagram must still be counted as dropped.)
            if accounted != len(datagrams):
                unaccounted.append(f"{what}: {len(datagrams)} datagrams, {len(got)} answers, weir's counters "
                                   f"moved {delta}")
            return got

        # Garbage of every size 1..1500, first byte random.
        got = probe("garbage 1..1500 B", [rng.randbytes(n) for n in range(1, 1501)], "127.0.0.21")
        # (Some random first bytes look like long headers of some version: a Version Negotiation
        # for those of >= 1200 bytes is allowed; nothing else is.)
        self.assertEqual([g for g in got if g.kind not in ("version_negotiation", "short")], [],
                         "answers to garbage other than Version Negotiation / stateless reset")
        # Truncated long headers: every prefix of a real-looking Initial up to its packet number.
        init = q.junk_initial(rng=rng)
        got = probe("truncated long headers", [init[:n] for n in range(1, 60)], "127.0.0.22")
        self.assertEqual(got, [], "answers to truncated long headers")
        # DCID length 255 (QUIC v1 allows 20), with and without enough bytes behind it; a Length
        # beyond the datagram; a token length beyond it; an 8-byte varint Length.
        bad = [bytes([0xC3]) + b"\0\0\0\1" + b"\xff" + rng.randbytes(1194),
               bytes([0xC3]) + b"\0\0\0\1" + b"\xff" + rng.randbytes(100),
               bytes([0xC3]) + b"\0\0\0\1" + b"\x08" + rng.randbytes(8) + b"\xff" + rng.randbytes(1185),
               bytes([0xC3]) + b"\0\0\0\1" + b"\x08" + rng.randbytes(8) + b"\x08" + rng.randbytes(8) +
               b"\x00" + b"\x7f\xff" + rng.randbytes(1180),
               bytes([0xC3]) + b"\0\0\0\1" + b"\x08" + rng.randbytes(8) + b"\x08" + rng.randbytes(8) +
               b"\xbf\xff\xff\xff" + rng.randbytes(1178),
               bytes([0xC3]) + b"\0\0\0\1" + b"\x08" + rng.randbytes(8) + b"\x08" + rng.randbytes(8) +
               b"\x00" + b"\xff" * 8 + rng.randbytes(1170)]
        got = probe("malformed long headers (DCID 255, lengths past the end)", bad * 3, "127.0.0.23")
        self.assertEqual([g for g in got if g.kind != "version_negotiation"], [],
                         "answers to malformed long headers")
        # Initials below 1200 bytes: MUST be discarded (RFC 9000 14.1), no Retry, no handshake.
        got = probe("junk Initials < 1200 B", [q.junk_initial(size=n, rng=rng) for n in (60, 200, 600, 1000, 1199)],
                    "127.0.0.24")
        self.assertEqual(got, [], "weir answered an Initial smaller than 1200 bytes")
        got = probe("real Initials cut short (300, 1199 B of 1200)", [q.real_initial()[0][:n] for n in (300, 1199)],
                    "127.0.0.19")
        self.assertEqual(got, [], "weir answered a truncated Initial")
        got = probe("real ClientHello Initials of 1000 and 1150 B", [q.real_initial(size=n)[0] for n in (1000, 1150)],
                    "127.0.0.20")
        self.assertEqual(got, [], "weir answered a (decryptable) Initial in a datagram smaller than 1200 bytes")
        # Unknown version, >= 1200 bytes: a Version Negotiation listing v1, CIDs swapped.
        dcid, scid = rng.randbytes(12), rng.randbytes(9)
        got = probe("unknown version 0x0badbad0, 1200 B",
                    [q.unknown_version_packet(0x0BADBAD0, 1200, dcid, scid)], "127.0.0.25")
        vn = [g for g in got if g.kind == "version_negotiation"]
        self.assertEqual(len(vn), 1, f"expected one Version Negotiation, got {got}")
        self.assertIn(q.QUIC_V1, vn[0].versions, repr(vn[0]))
        self.assertEqual((vn[0].dcid, vn[0].scid), (scid, dcid), "VN must echo the CIDs swapped (RFC 9000 17.2.1)")
        self.assertTrue(vn[0].first & 0x80, repr(vn[0]))
        print(f"\nVersion Negotiation: {vn[0]!r}")
        # Unknown versions with 255-byte CIDs (allowed for unknown versions), and small ones.
        got = probe("unknown version, 255-byte DCID",
                    [q.unknown_version_packet(0x0BADBAD1, 1300, rng.randbytes(255), rng.randbytes(255))],
                    "127.0.0.26")
        self.assertTrue(all(g.kind == "version_negotiation" for g in got), got)
        got = probe("unknown version, 100 B", [q.unknown_version_packet(0x0BADBAD2, 100)], "127.0.0.27")
        self.assertTrue(all(g.kind == "version_negotiation" for g in got), got)
        # Short headers to unknown connection IDs: a stateless reset or nothing; a reset never
        # three times or more the size of the packet it answers (RFC 9000 10.3), so none for
        # tiny packets. One source address per size, to tell which packet an answer is for.
        amplified = []
        for i, size in enumerate((1, 5, 10, 20, 21, 25, 40, 43, 100, 600, 1200)):
            got = probe(f"short headers of {size} B, unknown DCIDs",
                        [q.short_packet(min(rng.choice([8, 16, 20]), max(0, size - 1)), size) for _ in range(10)],
                        f"127.0.0.{30 + i}")
            self.assertTrue(all(g.kind == "short" for g in got), got)
            amplified += [(size, len(g.data)) for g in got if len(g.data) >= 3 * size]
        self.assertEqual(amplified, [], "stateless resets three times the size of the packet or more "
                                        "(trigger size, reset size)")
        print("hostile datagrams (sent, bytes, answers by kind, answer bytes, weir's counters moved):")
        for what, (n, nbytes, kinds, abytes, delta) in report.items():
            moved = ", ".join(f"{k} +{v:.0f}" for k, v in delta.items() if v)
            print(f"  {what}: {n} datagrams / {nbytes} B -> {kinds or 'nothing'} ({abytes} B); {moved or 'no counter moved'}")
        weir_alive(self, lb)
        # weir still serves HTTP/3 (and TCP).
        r = self.h3(lb, "/after-hostile")
        self.assertH3Ok(r, 1)
        r = curl(lb.url("/after"), "--http2", resolve=lb.resolve(), cacert=self.certs.ca)
        self.assertEqual(r.code, 200, r.describe())
        wait_until(lambda: self.m(lb, "weir_quic_connections_open") == 0, 35,
                   what="no QUIC connection left open by the hostile datagrams")
        # Last, so that the checks above run whatever this finds.
        self.assertEqual(unaccounted, [], "datagrams neither counted in weir_quic_packets_dropped_total nor "
                                          "answered (VN, stateless reset, Retry)")


class Http3RetryTest(Http3Case):
    """Initial floods from spoofed source addresses (127.0.0.2 .. 127.0.0.250)."""

    SOURCES = [f"127.0.0.{i}" for i in range(2, 251)]

    def flood(self, port: int, count: int, make, batch: int = 25, pause: float = 0.002):
        """Sends count Initials (make(i) -> (datagram, odcid, scid)) round-robin from one socket per
        source address, paced in batches; returns (probes, sent: {scid: odcid})."""
        probes = [q.UdpProbe(s) for s in self.SOURCES]
        for p in probes:
            self.addCleanup(p.close)
        sent = {}
        for i in range(count):
            d, odcid, scid = make(i)
            sent[scid] = odcid
            probes[i % len(probes)].send(port, d)
            if i % batch == batch - 1:
                for p in probes:
                    p.drain()
                time.sleep(pause)
        q.collect_many(probes, quiet=0.7, limit=15)
        return probes, sent

    def test_anti_amplification(self):
        # A spoofed address that sends one real ClientHello and never answers: until the address
        # is validated, weir sends it at most three times what it received (RFC 9000 §8.1),
        # retransmissions and probes included, then gives up.
        lb = self.start_h3_lb()
        victims = [q.UdpProbe(s) for s in self.SOURCES[:20]]
        for p in victims:
            self.addCleanup(p.close)
        got_hello = 0
        worst = 0.0
        for p in victims:
            d, odcid, _ = q.real_initial()
            p.send(lb.https_port, d)
        q.collect_many(victims, quiet=3.5, limit=15)
        for p in victims:
            sent_back = sum(len(d) for d in p.received)
            worst = max(worst, sent_back / q.MIN_INITIAL)
            got_hello += bool(p.received)
        print(f"\nanti-amplification: 20 spoofed addresses, one {q.MIN_INITIAL}-byte ClientHello each, "
              f"never acknowledged: {got_hello} got a handshake flight; the most weir sent one address "
              f"{worst:.2f}x what it received (retransmissions included)")
        self.assertEqual(got_hello, len(victims), "weir did not answer real ClientHellos")
        self.assertLessEqual(worst, 3.0, "weir sent an unvalidated address more than 3x what it received")

    def classify(self, probes, sent):
        """(retries verified, other answers by kind, bad retries, ODCIDs answered with a ServerHello)."""
        retries, kinds, bad, hello = 0, {}, [], set()
        for p in probes:
            for d in p.received:
                g = q.Parsed(d)
                if g.kind == "retry":
                    odcid = sent.get(g.dcid)
                    if odcid is None or not q.retry_tag_ok(d, odcid) or not g.token:
                        bad.append(g)
                    else:
                        retries += 1
                    continue
                kinds[g.kind] = kinds.get(g.kind, 0) + 1
                if g.kind == "initial":
                    odcid = sent.get(g.dcid)
                    if odcid is not None and q.has_server_hello(q.decrypt_server_initial(d, odcid)):
                        hello.add(odcid)
        return retries, kinds, bad, hello

    def test_retry_always_with_threshold_zero(self):
        lb = self.start_h3_lb(workers=2, limits={"quic_retry_threshold": 0})
        port = lb.https_port
        before = lb.metrics()
        rng = random.Random(7)
        n = 2000

        def make(i):
            d = q.junk_initial(rng=rng)
            dl = d[5]
            return d, d[6:6 + dl], d[7 + dl:7 + dl + d[6 + dl]]

        t0 = time.monotonic()
        probes, sent = self.flood(port, n, make)
        secs = time.monotonic() - t0
        retries, kinds, bad, _ = self.classify(probes, sent)
        after = lb.metrics()
        d_retry = after.get("weir_quic_retries_total") - before.get("weir_quic_retries_total")
        d_conn = after.get("weir_http3_connections_total") - before.get("weir_http3_connections_total")
        print(f"\nInitial flood, quic_retry_threshold 0: {n} Initials from {len(self.SOURCES)} addresses in "
              f"{secs:.1f}s; answered with {retries} valid Retry packets, other answers {kinds}, "
              f"{len(bad)} bad Retry packets; weir_quic_retries_total +{d_retry:.0f}, "
              f"weir_http3_connections_total +{d_conn:.0f}, open {after.get('weir_quic_connections_open'):.0f}, "
              f"dropped +{after.get('weir_quic_packets_dropped_total') - before.get('weir_quic_packets_dropped_total'):.0f}")
        self.assertEqual(bad[:5], [], "Retry packets with a wrong integrity tag, DCID or no token")
        self.assertEqual(kinds, {}, "answers other than Retry")
        self.assertGreaterEqual(retries, 0.9 * n, "Initials not answered with a Retry")
        self.assertGreaterEqual(d_retry, retries, "weir_quic_retries_total below the Retry packets received")
        self.assertLessEqual(d_retry, n)
        self.assertEqual(d_conn, 0, "connections created without a token with quic_retry_threshold 0")
        self.assertEqual(after.get("weir_quic_connections_open"), 0)

        # A real client follows the Retry.
        r = self.h3(lb, "/after-flood")
        print(f"gtlsclient after the flood: {r!r}")
        self.assertH3Ok(r, 1)
        self.assertEqual(r.retries, 1, "gtlsclient saw no Retry with quic_retry_threshold 0")

        # The token is good from the address it was given to, not from another one.
        a, b = q.UdpProbe("127.0.0.251"), q.UdpProbe("127.0.0.252")
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        d, dcid, scid = q.real_initial()
        a.send(port, d)
        got = a.collect()
        rt = [q.Parsed(x) for x in got if q.Parsed(x).kind == "retry"]
        self.assertEqual(len(rt), 1, f"a real Initial got {[q.Parsed(x) for x in got]}")
        self.assertTrue(q.retry_tag_ok(rt[0].data, dcid))
        token, new_dcid = rt[0].token, rt[0].scid
        b.send(port, q.real_initial(dcid=new_dcid, scid=scid, token=token)[0])
        other = [q.Parsed(x) for x in b.collect(quiet=0.5)]
        hello_b = any(q.has_server_hello(q.decrypt_server_initial(x.data, new_dcid)) for x in other)
        a.received.clear()
        a.send(port, q.real_initial(dcid=new_dcid, scid=scid, token=token)[0])
        mine = [q.Parsed(x) for x in a.collect(quiet=0.5)]
        hello_a = any(q.has_server_hello(q.decrypt_server_initial(x.data, new_dcid)) for x in mine)
        print(f"Retry token from 127.0.0.251 presented by 127.0.0.252: {other}; by 127.0.0.251: {mine}")
        self.assertFalse(hello_b, "weir accepted a Retry token from another address")
        self.assertTrue(hello_a, f"weir did not accept its own Retry token: {mine}")

    def test_retry_past_threshold(self):
        threshold, workers = 4, 2
        lb = self.start_h3_lb(workers=workers, limits={"quic_retry_threshold": threshold})
        port = lb.https_port
        before = lb.metrics()
        n = 2000
        made = [q.real_initial() for _ in range(n)]  # real ClientHellos: each starts a handshake
        open_peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    open_peak[0] = max(open_peak[0], self.m(lb, "weir_quic_connections_open"))
                except Exception:  # noqa: BLE001 - sampling only
                    pass
                stop.wait(0.05)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            t0 = time.monotonic()
            probes, sent = self.flood(port, n, lambda i: made[i])
            secs = time.monotonic() - t0
        finally:
            stop.set()
            t.join(5)
        retries, kinds, bad, hello = self.classify(probes, sent)
        after = lb.metrics()
        d_retry = after.get("weir_quic_retries_total") - before.get("weir_quic_retries_total")
        d_conn = after.get("weir_http3_connections_total") - before.get("weir_http3_connections_total")
        print(f"\nReal-Initial flood, quic_retry_threshold {threshold} x {workers} workers: {n} Initials in "
              f"{secs:.1f}s; {retries} valid Retry packets, other answers {kinds}, {len(bad)} bad Retry packets, "
              f"{len(hello)} handshakes started (ServerHello); weir_quic_retries_total +{d_retry:.0f}, "
              f"weir_http3_connections_total +{d_conn:.0f}, weir_quic_connections_open peak {open_peak[0]:.0f} "
              f"(now {after.get('weir_quic_connections_open'):.0f})")
        self.assertEqual(bad[:5], [], "Retry packets with a wrong integrity tag, DCID or no token")
        bound = threshold * workers
        # (Handshakes that time out free their place: over the whole flood more than `bound` may
        # have started; at no moment more than `bound` are open.)
        self.assertLessEqual(open_peak[0], bound, "weir_quic_connections_open beyond quic_retry_threshold x workers")
        self.assertGreaterEqual(retries, 0.9 * (n - bound), "Initials past the threshold not answered with Retry")
        self.assertGreaterEqual(d_retry, retries)
        self.assertLessEqual(d_retry, n)
        self.assertGreaterEqual(len(hello), 1, "no handshake started at all below the threshold")

        # Undecryptable Initials (right header, junk payload) never become handshakes in
        # progress, so they are not what the threshold counts: whatever weir does with them (a
        # connection made and closed at once, or dropped), it answers nothing and keeps none.
        rng = random.Random(11)

        def junk(i):
            d = q.junk_initial(rng=rng)
            dl = d[5]
            return d, d[6:6 + dl], d[7 + dl:7 + dl + d[6 + dl]]

        m0 = lb.metrics()
        probes, sent = self.flood(port, 2000, junk)
        jr, jkinds, jbad, _ = self.classify(probes, sent)
        m1 = lb.metrics()
        moved = {k: m1.get(k) - m0.get(k) for k in ("weir_quic_retries_total", "weir_http3_connections_total",
                                                     "weir_quic_packets_dropped_total")}
        print(f"junk-payload Initial flood (2000) with the threshold taken: {jr} Retry packets, other answers "
              f"{jkinds}; counters moved {moved}; open {m1.get('weir_quic_connections_open'):.0f}")
        self.assertEqual(jbad[:5], [], "bad Retry packets")
        self.assertEqual(jkinds, {}, "answers other than Retry to undecryptable Initials")
        self.assertLessEqual(m1.get("weir_quic_connections_open"), bound)

        # During a second flood, a real client gets through (through a Retry, the threshold being
        # taken by the flood's handshakes).
        more = [q.real_initial() for _ in range(600)]
        res = {}

        def second():
            res["flood"] = self.flood(port, len(more), lambda i: more[i], pause=0.01)

        ft = threading.Thread(target=second, daemon=True)
        ft.start()
        time.sleep(0.3)
        r = self.h3(lb, "/during-flood", timeout=60)
        ft.join(60)
        print(f"gtlsclient during a second flood: {r!r}")
        self.assertH3Ok(r, 1)
        weir_alive(self, lb)


if __name__ == "__main__":
    unittest.main()
