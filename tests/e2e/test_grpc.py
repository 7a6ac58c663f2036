"""gRPC through weir (upstream.md, issue 15): real grpcio clients (Debian's python3-grpcio) to
weir, weir to real grpcio servers (grpcserver.py: generic handlers, raw bytes, no codegen), with
backends `protocol: h2c` (clear text) and `protocol: h2` (servers[].tls, TLS on the server),
listeners `h2c: true` (plain) and TLS (ALPN h2).

- every call kind (unary, server-, client-, bidirectional streaming, interactively), metadata
  both ways, a 1 MiB message, over h2c and over TLS;
- errors: status code and message (UTF-8, percent-encoded on the wire) reach the client; an
  unknown method or service gets UNIMPLEMENTED;
- deadlines: a 300 ms deadline on a 2 s call → DEADLINE_EXCEEDED at about 300 ms and the server
  sees the call end early; a client cancel reaches the server (RST_STREAM upstream); weir itself
  honours grpc-timeout (a raw HTTP/2 client, an origin that ignores it);
- 200 concurrent calls succeed, on at most 4 upstream connections (workers: 2);
- two servers share the calls;
- /metrics: weir_requests_total carries grpc_status on gRPC requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import struct
import sys
import time
import unittest

from test_upstream_h2 import H2Origin, wait_for
from tlstest import H2Conn, TlsTestCase, weir_alive
from weirtest import HOST, require, wait_until

try:
    import grpc
except ImportError:  # not installed: every test fails under CI, is skipped locally (require)
    grpc = None

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "grpcserver.py")
M = "/weir.test.Echo/"
CALL_TIMEOUT = 15.0  # every call has a deadline: nothing waits forever
# No proxy from the environment, a connection of its own per channel (grpcio shares subchannels
# between channels otherwise), no transparent retries (they would hide what weir does).
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0), ("grpc.use_local_subchannel_pool", 1),
                   ("grpc.enable_retries", 0)]


class GrpcServer:
    """A grpcserver.py subprocess (cleaned up by the harness) and a direct channel to it."""

    def __init__(self, tc: "GrpcCase", server_id: str, tls: bool = False, max_streams: int | None = None):
        args = [sys.executable, SERVER, "--port", "0", "--id", server_id]
        if tls:
            args += ["--cert", tc.certs.backend.path, "--key", tc.certs.backend.key]
        if max_streams:
            args += ["--max-streams", str(max_streams)]
        self.id, self.tls, self.certs = server_id, tls, tc.certs
        self.proc = tc.spawn(args, f"grpc-{server_id}")
        text = wait_until(lambda: self.proc.stdout().strip() or (not self.proc.alive() and "dead"), 20, 0.05,
                          f"grpcserver {server_id} to print its port")
        if not text.isdigit():
            raise AssertionError(f"grpcserver {server_id} did not start ({text!r}):\n{self.proc.stderr()[-3000:]}")
        self.port = int(text.split()[0])
        self.address = f"{HOST}:{self.port}"
        self.direct = channel(self.port, tls, tc.certs.ca if tls else None, "backend.test")
        tc.addCleanup(self.direct.close)

    def stats(self, reset: bool = False) -> dict:
        """The server's Stats (asked directly, not through weir; not counted as a peer)."""
        return json.loads(self.direct.unary_unary(M + "Stats")(b"reset" if reset else b"", timeout=CALL_TIMEOUT))


def channel(port: int, tls: bool, ca: str | None = None, name: str = "a.test", options=()):
    """A grpcio channel to 127.0.0.1:port: clear text (prior knowledge), or TLS verified against
    ca for `name`."""
    opts = CHANNEL_OPTIONS + list(options)
    if not tls:
        return grpc.insecure_channel(f"{HOST}:{port}", options=opts)
    with open(ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    return grpc.secure_channel(f"{HOST}:{port}", creds, options=opts + [("grpc.ssl_target_name_override", name)])


def md(metadata, key: str):
    return [v for k, v in (metadata or ()) if k == key]


@contextlib.contextmanager
def rpc_step(tc: unittest.TestCase, what: str):
    """A call that must succeed: its RpcError becomes a test failure naming the step."""
    try:
        yield
    except grpc.RpcError as e:
        raise tc.failureException(f"{what}: the call failed: {e.code()} {e.details()!r}") from None


# ----------------------------------------------------------------------------------------------
# Checks that run on any channel: through weir in the tests, straight to the server to check
# the tests themselves.


def check_call_kinds(tc: unittest.TestCase, ch, server_id: str, what: str):
    # Unary, metadata both ways (initial and trailing).
    with rpc_step(tc, f"{what}: unary"):
        resp, call = ch.unary_unary(M + "Unary").with_call(b"hello", timeout=CALL_TIMEOUT,
                                                           metadata=[("x-custom", "v1")])
    tc.assertEqual(resp, b"hello", f"{what}: unary echo")
    tc.assertEqual(call.code(), grpc.StatusCode.OK, what)
    tc.assertEqual(md(call.initial_metadata(), "x-server"), [server_id], f"{what}: initial metadata")
    tc.assertEqual(md(call.trailing_metadata(), "x-served-by"), [server_id], f"{what}: trailing metadata (trailers)")
    with rpc_step(tc, f"{what}: unary (metadata)"):
        meta = json.loads(ch.unary_unary(M + "Meta")(b"", timeout=CALL_TIMEOUT, metadata=[("x-custom", "v2")]))
    tc.assertIn(["x-custom", "v2"], meta["metadata"], f"{what}: request metadata did not reach the server")
    # A 1 MiB message (flow control both ways).
    big = os.urandom(1 << 20)
    with rpc_step(tc, f"{what}: 1 MiB unary"):
        tc.assertEqual(ch.unary_unary(M + "Unary")(big, timeout=CALL_TIMEOUT), big, f"{what}: 1 MiB unary echo")
    # Server streaming: 50 messages of 2000 bytes.
    with rpc_step(tc, f"{what}: server streaming"):
        items = list(ch.unary_stream(M + "ServerStream")(b"50 2000", timeout=CALL_TIMEOUT))
        empty = list(ch.unary_stream(M + "ServerStream")(b"0", timeout=CALL_TIMEOUT))
    tc.assertEqual(len(items), 50, f"{what}: server streaming message count")
    tc.assertEqual(items, [(b"item-%d" % i).ljust(2000, b".") for i in range(50)], f"{what}: server streaming")
    tc.assertEqual(empty, [], f"{what}: empty server stream")
    # Client streaming.
    msgs = [b"alpha", b"", b"beta", b"g" * 70000]
    with rpc_step(tc, f"{what}: client streaming"):
        resp = ch.stream_unary(M + "ClientStream")(iter(msgs), timeout=CALL_TIMEOUT)
    tc.assertEqual(resp, b"4:" + b"".join(msgs), f"{what}: client streaming")
    # Bidirectional, interactively: each echo arrives before the next message is sent.
    q: queue.Queue = queue.Queue()

    def requests():
        while True:
            try:
                item = q.get(timeout=CALL_TIMEOUT)
            except queue.Empty:
                return
            if item is None:
                return
            yield item

    call = ch.stream_stream(M + "Bidi")(requests(), timeout=CALL_TIMEOUT)
    try:
        with rpc_step(tc, f"{what}: bidirectional streaming"):
            for i in range(5):
                q.put(b"m%d" % i)
                tc.assertEqual(next(call), b"echo:m%d" % i, f"{what}: bidi echo {i}")
            q.put(None)
            tc.assertEqual(list(call), [], f"{what}: bidi end")
        tc.assertEqual(call.code(), grpc.StatusCode.OK, what)
    finally:
        q.put(None)
        call.cancel()


def check_errors(tc: unittest.TestCase, ch, what: str):
    cases = [("NOT_FOUND", "no such thing"), ("INVALID_ARGUMENT", "pas trouvé ✓ 100% \"quoted\""),
             ("PERMISSION_DENIED", "")]
    for code, message in cases:
        try:
            ch.unary_unary(M + "Fail")(f"{code} {message}".encode(), timeout=CALL_TIMEOUT)
            tc.fail(f"{what}: Fail({code}) succeeded")
        except grpc.RpcError as e:
            tc.assertEqual((e.code(), e.details()), (grpc.StatusCode[code], message), f"{what}: status and message")
    for path in (M + "NoSuchMethod", "/weir.test.NoSuchService/Unary"):
        try:
            ch.unary_unary(path)(b"", timeout=CALL_TIMEOUT)
            tc.fail(f"{what}: {path} succeeded")
        except grpc.RpcError as e:
            tc.assertEqual(e.code(), grpc.StatusCode.UNIMPLEMENTED, f"{what}: {path}: {e.details()!r}")


def check_deadline(tc: unittest.TestCase, ch, server: GrpcServer, what: str):
    before = server.stats()
    t0 = time.monotonic()
    try:
        ch.unary_unary(M + "Sleep")(b"2000", timeout=0.3)
        tc.fail(f"{what}: Sleep(2000) with a 300 ms deadline succeeded")
    except grpc.RpcError as e:
        elapsed = time.monotonic() - t0
        tc.assertEqual(e.code(), grpc.StatusCode.DEADLINE_EXCEEDED, f"{what}: {e.details()!r}")
    tc.assertGreater(elapsed, 0.25, f"{what}: the deadline fired too early")
    tc.assertLess(elapsed, 1.0, f"{what}: DEADLINE_EXCEEDED came {elapsed:.2f}s after the call, not at about 300 ms")
    wait_until(lambda: server.stats()["cancelled"] > before["cancelled"], 1.5, 0.05,
               f"{what}: the server to see the call cancelled (it ran on for 2 s: nothing reached it)")
    st = server.stats()
    tc.assertLess(st["cancels"][-1]["ran_ms"], 1200, f"{what}: the cancel reached the server late: {st['cancels']}")
    time.sleep(max(0.0, t0 + 2.3 - time.monotonic()))
    tc.assertEqual(server.stats()["sleep_completed"], before["sleep_completed"], f"{what}: the call ran to its end")


def check_cancel(tc: unittest.TestCase, ch, server: GrpcServer, what: str):
    before = server.stats()
    fut = ch.unary_unary(M + "Sleep").future(b"10000", timeout=30)
    try:
        wait_until(lambda: server.stats()["calls"].get("Sleep", 0) > before["calls"].get("Sleep", 0), 5, 0.05,
                   f"{what}: the Sleep call to reach the server")
        time.sleep(0.2)
        t0 = time.monotonic()
        tc.assertTrue(fut.cancel(), f"{what}: the call could not be cancelled")
        wait_until(lambda: server.stats()["cancelled"] > before["cancelled"], 3, 0.05,
                   f"{what}: the server to see the client's cancel (RST_STREAM upstream)")
        took = time.monotonic() - t0
    finally:
        fut.cancel()
    last = server.stats()["cancels"][-1]
    # 30 s deadline: the cancel came well before it, from the client, not from a timeout.
    tc.assertGreater(last["deadline_left_ms"], 20000, f"{what}: {last}")
    tc.assertLess(took, 3, what)


# ----------------------------------------------------------------------------------------------
# The tests


class GrpcCase(TlsTestCase):
    def setUp(self):
        require(grpc is not None, "python3-grpcio is missing (apt-get install python3-grpcio)", self)
        super().setUp()

    def start_grpc(self, server_id: str = "s1", tls: bool = False, max_streams: int | None = None) -> GrpcServer:
        return GrpcServer(self, server_id, tls, max_streams)

    def grpc_lb(self, servers: list[GrpcServer], workers: int = 2, backend_extra: dict | None = None):
        tls = any(s.tls for s in servers)
        svs = []
        for s in servers:
            sv = {"address": s.address, "name": s.id}
            if s.tls:
                sv["tls"] = {"ca": self.certs.ca, "sni": "backend.test"}
            svs.append(sv)
        be = {"protocol": "h2" if tls else "h2c"}
        be.update(backend_extra or {})
        return self.start_tls_lb(svs, backend_extra=be, workers=workers)

    def channel(self, lb, tls: bool, **kw):
        ch = channel(lb.https_port if tls else lb.plain_port, tls, self.certs.ca, **kw)
        self.addCleanup(ch.close)
        return ch


class GrpcCallsTest(GrpcCase):
    def test_call_kinds_h2c(self):
        s = self.start_grpc("plain-1")
        lb = self.grpc_lb([s])
        check_call_kinds(self, self.channel(lb, tls=False), "plain-1", "h2c listener → h2c backend")
        check_call_kinds(self, self.channel(lb, tls=True), "plain-1", "TLS listener → h2c backend")
        weir_alive(self, lb)

    def test_call_kinds_tls(self):
        s = self.start_grpc("tls-1", tls=True)
        lb = self.grpc_lb([s])
        check_call_kinds(self, self.channel(lb, tls=True), "tls-1", "TLS listener → h2 (TLS) backend")
        check_call_kinds(self, self.channel(lb, tls=False), "tls-1", "h2c listener → h2 (TLS) backend")
        weir_alive(self, lb)

    def test_errors(self):
        for tls in (False, True):
            with self.subTest(tls=tls):
                s = self.start_grpc("err-tls" if tls else "err", tls=tls)
                lb = self.grpc_lb([s])
                check_errors(self, self.channel(lb, tls=tls), "TLS" if tls else "h2c")

    def test_two_servers_share_calls(self):
        a, b = self.start_grpc("s-a"), self.start_grpc("s-b")
        lb = self.grpc_lb([a, b], backend_extra={"balance": "round_robin"})
        ch = self.channel(lb, tls=False)
        seen = []
        for i in range(20):
            with rpc_step(self, f"unary call {i}"):
                _, call = ch.unary_unary(M + "Unary").with_call(b"%d" % i, timeout=CALL_TIMEOUT)
            seen += md(call.initial_metadata(), "x-server")
        counts = {k: seen.count(k) for k in ("s-a", "s-b")}
        self.assertEqual(len(seen), 20, seen)
        self.assertGreaterEqual(min(counts.values()), 5, f"calls not spread over both servers: {counts}")


class GrpcDeadlineTest(GrpcCase):
    def test_deadline_exceeded_and_server_cancelled(self):
        s = self.start_grpc("sleepy")
        lb = self.grpc_lb([s])
        check_deadline(self, self.channel(lb, tls=False), s, "h2c")
        weir_alive(self, lb)

    def test_client_cancel_reaches_server(self):
        for tls in (False, True):
            with self.subTest(tls=tls):
                s = self.start_grpc("cancel-tls" if tls else "cancel", tls=tls)
                lb = self.grpc_lb([s])
                ch = self.channel(lb, tls=tls)
                check_cancel(self, ch, s, "TLS" if tls else "h2c")
                # The connection (client and upstream) still works after the reset.
                with rpc_step(self, "a call after the cancel"):
                    self.assertEqual(ch.unary_unary(M + "Unary")(b"after", timeout=CALL_TIMEOUT), b"after")

    def test_weir_honours_grpc_timeout(self):
        """weir itself honours grpc-timeout: in front of an origin that ignores it (H2Origin,
        answering after 3 s), weir ends the stream at about the timeout and resets it upstream."""
        o = H2Origin("slow-grpc")
        self.addCleanup(o.stop)
        lb = self.start_tls_lb([{"address": o.address, "name": "slow"}], backend_extra={"protocol": "h2c"})
        c = H2Conn(lb.plain_port, timeout=15)
        self.addCleanup(c.close)
        body = b"\x00" + struct.pack(">I", 4) + b"3000"
        grpc_headers = [("content-type", "application/grpc"), ("te", "trailers")]
        # Control: no grpc-timeout, a 1 s answer comes.
        s = c.response(c.request("/weir.test.Echo/Sleep?ms=1000", "POST", headers=grpc_headers, body=body,
                                 end_stream=True), timeout=15)
        self.assertEqual(s.status, 200, repr(s))
        t0 = time.monotonic()
        sid = c.request("/weir.test.Echo/Sleep?ms=3000", "POST", headers=grpc_headers + [("grpc-timeout", "300m")],
                        body=body, end_stream=True)
        s = c.response(sid, timeout=10)
        took = time.monotonic() - t0
        got = (f"status {s.status}, headers {s.headers}, trailers {s.trailers}, reset {s.reset}, "
               f"{s.data_len} data bytes")
        print(f"\ngrpc-timeout 300m on a 3 s call: ended after {took:.2f}s: {got}")
        self.assertLess(took, 1.5, f"weir did not honour grpc-timeout (300m): the stream ended after {took:.2f}s: {got}")
        self.assertGreater(took, 0.25, got)
        wait_for(lambda: o.resets >= 1, 3, "weir to reset the stream upstream (RST_STREAM)", o.summary)
        weir_alive(self, lb)


class GrpcLoadTest(GrpcCase):
    def test_200_concurrent_calls_few_connections(self):
        s = self.start_grpc("load", max_streams=100)
        lb = self.grpc_lb([s], workers=2)
        chans = [self.channel(lb, tls=False) for _ in range(4)]
        # One call first on each channel: the 4 client connections are up.
        for ch in chans:
            with rpc_step(self, "a first call on each channel"):
                ch.unary_unary(M + "Unary")(b"warm", timeout=CALL_TIMEOUT)
        futs = []
        t0 = time.monotonic()
        for i in range(200):
            ch = chans[i % 4]
            futs.append(ch.unary_unary(M + "Unary").future(b"call-%d" % i, timeout=60,
                                                            metadata=[("x-delay-ms", "200")]))
        errors = []
        for i, f in enumerate(futs):
            try:
                r = f.result(timeout=90)
                if r != b"call-%d" % i:
                    errors.append(f"call {i}: got {r[:40]!r}")
            except grpc.RpcError as e:
                errors.append(f"call {i}: {e.code()} {e.details()!r}")
            except Exception as e:  # noqa: BLE001 - a timeout of result()
                errors.append(f"call {i}: {e!r}")
        took = time.monotonic() - t0
        st = s.stats()
        print(f"\n200 concurrent calls in {took:.2f}s; the server saw {len(st['peers'])} connections, "
              f"at most {st['max_active']} calls at once")
        self.assertEqual(errors, [], f"{len(errors)} of 200 calls failed")
        self.assertLessEqual(len(st["peers"]), 4, f"weir opened too many upstream connections: {st['peers']}")
        weir_alive(self, lb)


class GrpcMetricsTest(GrpcCase):
    def test_requests_total_grpc_status_label(self):
        s = self.start_grpc("metrics")
        lb = self.grpc_lb([s])
        ch = self.channel(lb, tls=False)
        for i in range(3):
            with rpc_step(self, f"unary call {i}"):
                self.assertEqual(ch.unary_unary(M + "Unary")(b"ok", timeout=CALL_TIMEOUT), b"ok")
        for i in range(2):
            with self.assertRaises(grpc.RpcError) as cm:
                ch.unary_unary(M + "Fail")(b"NOT_FOUND no such thing", timeout=CALL_TIMEOUT)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)

        def counted():
            m = lb.metrics()
            return m if (m.get("weir_requests_total", backend="web", grpc_status="0") >= 3 and
                         m.get("weir_requests_total", backend="web", grpc_status="5") >= 2) else None

        try:
            m = wait_until(counted, 5, 0.1, "grpc_status 0 and 5 in weir_requests_total")
        except AssertionError:
            text = lb.metrics().text
            lines = [line for line in text.splitlines() if line.startswith("weir_requests_total")]
            raise AssertionError("weir_requests_total has no grpc_status=\"0\" (3 calls) / grpc_status=\"5\" (2 calls) "
                                 "samples for backend web:\n" + "\n".join(lines)) from None
        self.assertEqual(m.get("weir_requests_total", backend="web", grpc_status="0"), 3, m.text)
        self.assertEqual(m.get("weir_requests_total", backend="web", grpc_status="5"), 2, m.text)
        # gRPC errors travel in trailers of an HTTP 200 answer; the listener is the plain one.
        self.assertEqual(m.get("weir_requests_total", backend="web", grpc_status="5", code="200", listener="plain"), 2,
                         m.text)


class GrpcWeirAnswersTest(GrpcCase):
    """weir's own errors to gRPC clients are gRPC answers (HTTP 200, grpc-status), counted with
    their grpc_status; a server that went away is UNAVAILABLE, a path no route takes is
    UNIMPLEMENTED."""

    def test_no_server_is_unavailable(self):
        s = self.start_grpc("gone")
        lb = self.grpc_lb([s], workers=1, backend_extra={"retries": 0})
        ch = self.channel(lb, tls=False)
        with rpc_step(self, "a call while the server is up"):
            self.assertEqual(ch.unary_unary(M + "Unary")(b"up", timeout=CALL_TIMEOUT), b"up")
        s.proc.expect(None)  # killed on purpose
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(10)
        codes = set()
        for _ in range(3):
            with self.assertRaises(grpc.RpcError) as cm:
                ch.unary_unary(M + "Unary")(b"down", timeout=CALL_TIMEOUT)
            codes.add(cm.exception.code())
        self.assertEqual(codes, {grpc.StatusCode.UNAVAILABLE},
                         "weir's 502/503 reach a gRPC client as UNAVAILABLE")
        m = lb.metrics()
        self.assertGreaterEqual(m.get("weir_requests_total", grpc_status="14", code="200"), 3, m.text)

    def test_no_route_is_unimplemented(self):
        s = self.start_grpc("routed")
        lb = self.grpc_lb([s], workers=1)
        ch = self.channel(lb, tls=False)
        cfg = dict(lb.cfg)
        # A listener that routes only /weir.test.Echo/Unary: another method has no route (404).
        for listener in cfg["listeners"]:
            backend = listener.pop("backend", None) or "web"
            listener["routes"] = [{"match": {"path": M + "Unary"}, "backend": backend}]
        lb.reload(cfg)
        self.assertEqual(ch.unary_unary(M + "Unary")(b"routed", timeout=CALL_TIMEOUT), b"routed")
        with self.assertRaises(grpc.RpcError) as cm:
            ch.unary_unary(M + "Meta")(b"", timeout=CALL_TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)


if __name__ == "__main__":
    unittest.main()
