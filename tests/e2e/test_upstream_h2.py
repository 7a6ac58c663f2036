"""HTTP/2 towards servers (upstream.md, issue 15), without gRPC: backends with `protocol: h2c`,
`h2` and `auto` in front of small origins written here on python3-h2 (H2Origin: threads, every
socket with a timeout, stopped at cleanup), with HTTP/1.1 and HTTP/2 clients through weir.

- GET, a 1 MiB POST and a 5 MiB answer with checksums, response headers passed, hop-by-hop
  request headers not forwarded, trailers both ways (HTTP/2 and HTTP/1.1 chunked);
- the origin's SETTINGS_MAX_CONCURRENT_STREAMS=2 respected under 20 concurrent requests;
- an origin that sends GOAWAY after every 10 streams and closes once they are done: 200
  requests at concurrency 8, none failed, none processed twice;
- RST_STREAM(REFUSED_STREAM) retried on the other server;
- `protocol: auto`: ALPN h2 gives HTTP/2, an origin offering only http/1.1 gets HTTP/1.1;
- a slow HTTP/1.1 client reading 50 MiB from an h2c origin: the origin is held back by flow
  control and weir's RSS stays bounded;
- health checks of an h2c-only origin speak HTTP/2 (up), and a 503 on the health path takes
  the server down;
- `weir check`: protocol h3, h2 without servers[].tls, send_proxy_protocol with h2/h2c.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import select
import socket
import ssl
import threading
import time
import unittest
import urllib.parse

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from tlstest import MB, H2Conn, PeakRss, TlsTestCase, weir_alive
from weirtest import HOST, HttpConn, build_request, rss, run_threads, wait_until

IO = 10.0
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
LOC = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): (?P<msg>.+)$")
HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "x-hop")

# ----------------------------------------------------------------------------------------------
# Bodies: a deterministic pattern, so that both ends can checksum without keeping it

_BLOCK = random.Random(15).randbytes(1 << 20)
_SHA_CACHE: dict[int, str] = {}


def pattern_chunks(n: int, chunk: int = 1 << 16):
    """n bytes of the pattern (1 MiB of seeded random bytes, repeated), in pieces."""
    pos = 0
    while pos < n:
        off = pos % len(_BLOCK)
        take = min(chunk, n - pos, len(_BLOCK) - off)
        yield _BLOCK[off:off + take]
        pos += take


def pattern(n: int) -> bytes:
    return b"".join(pattern_chunks(n))


def pattern_sha(n: int) -> str:
    if n not in _SHA_CACHE:
        h = hashlib.sha256()
        for c in pattern_chunks(n):
            h.update(c)
        _SHA_CACHE[n] = h.hexdigest()
    return _SHA_CACHE[n]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------------------------
# The origin


class _Body:
    """A response body being sent: pattern bytes or fixed bytes, then optional trailers."""

    def __init__(self, size: int | None = None, data: bytes = b"", trailers=None):
        self.size = size if size is not None else len(data)
        self.data = data if size is None else None
        self.sent = 0
        self.trailers = trailers

    @property
    def remaining(self) -> int:
        return self.size - self.sent

    def take(self, n: int) -> bytes:
        if self.data is not None:
            out = self.data[self.sent:self.sent + n]
        else:
            off = self.sent % len(_BLOCK)
            out = _BLOCK[off:off + min(n, len(_BLOCK) - off)]
        self.sent += len(out)
        return out


class H2Origin:
    """An HTTP/2 origin on 127.0.0.1 (python3-h2, a thread per connection, every socket with a
    timeout): h2c with prior knowledge, or TLS with the ALPN list `alpn` (HTTP/1.1 is served
    when ALPN does not pick h2; `h1` lets a clear-text origin answer HTTP/1.1 too; without it an
    HTTP/1.1 request gets 505 and is counted in h1_rejected).

    Every request gets an answer built by respond(): /healthz → self.health; ?status=N, ?ms=N
    (answer after N ms), ?size=N (N pattern bytes, x-body-sha256), ?trailers=1 (trailers
    x-checksum and x-trailer), ?nolength=1 (no content-length); otherwise a JSON record of the
    request (method, path, authority, scheme, headers, body length and sha256, trailers,
    protocol). Behaviours: max_streams (SETTINGS_MAX_CONCURRENT_STREAMS; a stream over it before
    weir acknowledged the setting is refused with REFUSED_STREAM and counted in early_refused,
    after it is a violation), goaway_every (after that many streams on a connection: GOAWAY with
    the last of them, the rest ignored, closed once those are answered), refuse_all (every
    stream reset with REFUSED_STREAM)."""

    def __init__(self, name: str = "origin", *, max_streams: int | None = None, goaway_every: int | None = None,
                 refuse_all: bool = False, tls_cert=None, alpn=("h2",), h1: bool = False,
                 sndbuf: int | None = None):
        self.name = name
        self.max_streams = max_streams
        self.goaway_every = goaway_every
        self.refuse_all = refuse_all
        self.h1 = h1
        self.sndbuf = sndbuf
        self.health = 200
        self.lock = threading.Lock()
        self.requests: list[dict] = []     # every request answered (or being answered)
        self.conns = 0
        self.h1_rejected = 0
        self.max_concurrent = 0            # the most streams in progress on one connection
        self.violations: list[str] = []    # streams over max_streams after the ACK
        self.early_refused = 0
        self.goaways = 0
        self.refused = 0
        self.ignored = 0                   # streams above a GOAWAY's last stream id
        self.resets = 0                    # RST_STREAM received
        self.pings = 0                     # PING frames received (not ACKs)
        self.errors: list[str] = []
        self.bytes_sent = 0                # response body bytes written to sockets
        self.ctx = None
        if tls_cert is not None:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(tls_cert.path, tls_cert.key)
            self.ctx.set_alpn_protocols(list(alpn))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.address = f"{HOST}:{self.port}"
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)

    # -- bookkeeping

    def count(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def record(self, req: dict):
        with self.lock:
            self.requests.append(req)

    def paths(self) -> list[str]:
        with self.lock:
            return [r["path"] for r in self.requests]

    def summary(self) -> str:
        with self.lock:
            return (f"origin {self.name}: {self.conns} connections, {len(self.requests)} requests, "
                    f"max {self.max_concurrent} concurrent streams, {self.goaways} GOAWAY, {self.refused} refused, "
                    f"{self.early_refused} refused before the SETTINGS ACK, {self.ignored} ignored after GOAWAY, "
                    f"{self.resets} RST_STREAM received, {self.h1_rejected} HTTP/1.1 rejected, "
                    f"violations {self.violations[:3]}, errors {self.errors[:3]}")

    def stop(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in list(self._threads):
            t.join(5)

    # -- connections

    def _accept_loop(self):
        n = 0
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            n += 1
            c.settimeout(IO)
            if self.sndbuf:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.conns += 1
                self._socks.append(c)
            t = threading.Thread(target=self._serve, args=(c, n), daemon=True)
            with self.lock:
                self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()

    def _serve(self, c: socket.socket, conn_id: int):
        try:
            first = b""
            if self.ctx is not None:
                c = self.ctx.wrap_socket(c, server_side=True)
                with self.lock:
                    self._socks.append(c)
                proto = c.selected_alpn_protocol()
                if proto == "h2":
                    _H2Session(self, c, conn_id, b"").run()
                else:
                    self._serve_h1(c, b"", conn_id)
                return
            while len(first) < len(PREFACE) and PREFACE.startswith(first):
                d = c.recv(len(PREFACE) - len(first))
                if not d:
                    return
                first += d
            if first == PREFACE:
                _H2Session(self, c, conn_id, first).run()  # h2 reads the preface itself
            elif self.h1:
                self._serve_h1(c, first, conn_id)
            else:
                self.count(h1_rejected=1)
                c.sendall(b"HTTP/1.1 505 HTTP Version Not Supported\r\nConnection: close\r\n"
                          b"Content-Length: 18\r\n\r\nHTTP/2 (h2c) only\n")
        except Exception as e:  # noqa: BLE001 - recorded; the tests look at the requests
            if not self._stop.is_set():
                with self.lock:
                    self.errors.append(f"conn {conn_id}: {e!r}")
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _serve_h1(self, c: socket.socket, buf: bytes, conn_id: int):
        """HTTP/1.1 keep-alive: Content-Length or chunked request bodies (with trailers)."""

        def more(buf: bytes) -> bytes:
            d = c.recv(65536)
            if not d:
                raise EOFError("the client closed")
            return buf + d

        def line(buf: bytes):
            while b"\r\n" not in buf:
                buf = more(buf)
            first, _, rest = buf.partition(b"\r\n")
            return first, rest

        while not self._stop.is_set():
            try:
                while b"\r\n\r\n" not in buf:
                    buf = more(buf)
            except EOFError:
                return  # between requests: a normal end
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = []
            for h in lines[1:]:
                k, _, v = h.partition(":")
                headers.append((k.strip().lower(), v.strip()))
            hd = dict(headers)
            body, trailers = b"", []
            if "chunked" in hd.get("transfer-encoding", "").lower():
                while True:
                    size_line, buf = line(buf)
                    size = int(size_line.split(b";")[0], 16)
                    if size == 0:
                        while True:
                            t, buf = line(buf)
                            if not t:
                                break
                            k, _, v = t.decode("latin-1").partition(":")
                            trailers.append((k.strip().lower(), v.strip()))
                        break
                    while len(buf) < size + 2:
                        buf = more(buf)
                    body += buf[:size]
                    buf = buf[size + 2:]
            else:
                n = int(hd.get("content-length", "0") or 0)
                while len(buf) < n:
                    buf = more(buf)
                body, buf = buf[:n], buf[n:]
            req = {"conn": conn_id, "sid": None, "protocol": "http/1.1", "method": method, "path": target,
                   "authority": hd.get("host"), "scheme": "https" if self.ctx else "http", "headers": headers,
                   "body_len": len(body), "body_sha256": sha(body), "trailers": trailers}
            self.record(req)
            status, rh, rbody = self.respond(req)
            chunked = bool(rbody.trailers) or any(k == "x-no-length" for k, _ in rh)
            out = [f"HTTP/1.1 {status} X\r\n"]
            out.append("Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {rbody.size}\r\n")
            out += [f"{k}: {v}\r\n" for k, v in rh if k not in ("content-length", "x-no-length")]
            c.sendall("".join(out).encode("latin-1") + b"\r\n")
            while rbody.remaining:
                piece = rbody.take(65536)
                c.sendall((b"%x\r\n" % len(piece) + piece + b"\r\n") if chunked else piece)
                self.count(bytes_sent=len(piece))
            if chunked:
                c.sendall(b"0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in (rbody.trailers or [])).encode() + b"\r\n")
            if hd.get("connection", "").lower() == "close":
                return

    # -- answers

    def respond(self, req: dict):
        """(status, headers without :status, _Body) for a request record."""
        url = urllib.parse.urlsplit(req["path"])
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        status = int(q.get("status", "200"))
        if url.path == "/healthz":
            status = self.health
        headers = [("content-type", "application/octet-stream" if "size" in q else "application/json"),
                   ("x-origin", self.name), ("x-protocol", req["protocol"]),
                   ("set-cookie", "a=1; Path=/"), ("set-cookie", "b=2; Path=/")]
        if "size" in q:
            n = int(q["size"])
            headers.append(("x-body-sha256", pattern_sha(n)))
            body = _Body(size=n)
        else:
            body = _Body(data=json.dumps(dict(req, origin=self.name)).encode())
        if q.get("trailers"):
            body.trailers = [("x-checksum", pattern_sha(body.size) if "size" in q else sha(body.data)),
                             ("x-trailer", "yes")]
        if q.get("nolength") or q.get("trailers"):
            headers.append(("x-no-length", "1"))
        else:
            headers.append(("content-length", str(body.size)))
        return status, headers, body

    @staticmethod
    def delay(req: dict) -> float:
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(req["path"]).query)
        return int(q.get("ms", ["0"])[-1]) / 1000


class _H2Session:
    """One HTTP/2 server connection of an H2Origin: a select loop in its thread."""

    def __init__(self, origin: H2Origin, sock, conn_id: int, first: bytes):
        self.o, self.sock, self.conn_id, self.first = origin, sock, conn_id, first
        cfg = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                        validate_inbound_headers=False, normalize_inbound_headers=False)
        self.conn = h2.connection.H2Connection(cfg)
        self.conn.initiate_connection()
        # The limit goes in a SETTINGS frame of its own: h2 enforces it (TooManyStreamsError, a
        # violation) from the peer's ACK of that frame on; streams over it before the ACK are
        # legal and get REFUSED_STREAM (like nghttp2 servers do).
        self.settings_acked = not origin.max_streams
        if origin.max_streams:
            self.conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: origin.max_streams})
        self.reqs: dict[int, dict] = {}         # streams whose request is arriving
        self.hashers: dict[int, object] = {}
        self.active: set[int] = set()           # streams in progress (counted for concurrency)
        self.sending: dict[int, _Body] = {}
        self.timers: list[tuple[float, int]] = []
        self.pending_reqs: dict[int, dict] = {}  # complete requests waiting for their ?ms delay
        self.streams_seen = 0
        self.goaway_last: int | None = None
        self.peer_gone = False

    def protocol(self) -> str:
        return "h2"

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def run(self):
        try:
            if self.first:
                self.feed(self.first)
            while not self.o._stop.is_set():
                self.pump_bodies()
                self.flush()
                if self.goaway_last is not None and not self.active:
                    return  # every stream up to the GOAWAY's last id is answered: close
                if self.peer_gone and not self.active:
                    return
                now = time.monotonic()
                timeout = 0.05
                if self.timers:
                    timeout = max(0.0, min(timeout, min(t for t, _ in self.timers) - now))
                pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
                if pending or select.select([self.sock], [], [], timeout)[0]:
                    data = self.sock.recv(1 << 16)
                    if not data:
                        return
                    self.feed(data)
                self.fire_timers()
        except h2.exceptions.TooManyStreamsError as e:
            with self.o.lock:
                self.o.violations.append(f"conn {self.conn_id}: {e}")
        finally:
            self.linger()

    def linger(self):
        """A graceful close: what is queued is sent, then FIN, then what the peer still sends is
        read (up to 2 s) so that the close is not a reset that could destroy the last answers."""
        try:
            self.flush()
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                if not select.select([self.sock], [], [], 0.1)[0]:
                    continue
                if not self.sock.recv(1 << 16):
                    return
        except (OSError, ValueError):
            pass

    def feed(self, data: bytes):
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                self.on_request(ev)
            elif isinstance(ev, h2.events.DataReceived):
                if ev.stream_id in self.reqs:
                    self.reqs[ev.stream_id]["body_len"] += len(ev.data)
                    self.hashers[ev.stream_id].update(ev.data)
                try:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                except h2.exceptions.StreamClosedError:
                    pass
            elif isinstance(ev, h2.events.TrailersReceived):
                if ev.stream_id in self.reqs:
                    self.reqs[ev.stream_id]["trailers"] = [(k.decode("latin-1"), v.decode("latin-1"))
                                                           for k, v in ev.headers]
            elif isinstance(ev, h2.events.StreamEnded):
                self.on_request_complete(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                self.o.count(resets=1)
                self.done(ev.stream_id)
            elif isinstance(ev, h2.events.SettingsAcknowledged):
                if h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS in ev.changed_settings:
                    self.settings_acked = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.peer_gone = True
            elif isinstance(ev, h2.events.PingReceived):
                self.o.count(pings=1)

    def on_request(self, ev):
        sid = ev.stream_id
        self.streams_seen += 1
        if self.goaway_last is not None and sid > self.goaway_last:
            self.o.count(ignored=1)  # not processed, as the GOAWAY told
            return
        if self.o.refuse_all:
            self.o.count(refused=1)
            self.conn.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        if self.o.max_streams and len(self.active) >= self.o.max_streams:
            if self.settings_acked:  # h2 raises TooManyStreamsError first; kept for clarity
                with self.o.lock:
                    self.o.violations.append(f"conn {self.conn_id}: stream {sid} over {self.o.max_streams}")
            else:
                self.o.count(early_refused=1)
            self.conn.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        self.active.add(sid)
        with self.o.lock:
            self.o.max_concurrent = max(self.o.max_concurrent, len(self.active))
        hs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in ev.headers]
        pseudo = {k: v for k, v in hs if k.startswith(":")}
        self.reqs[sid] = {"conn": self.conn_id, "sid": sid, "protocol": "h2", "method": pseudo.get(":method"),
                          "path": pseudo.get(":path"), "authority": pseudo.get(":authority"),
                          "scheme": pseudo.get(":scheme"), "headers": [(k, v) for k, v in hs if not k.startswith(":")],
                          "body_len": 0, "body_sha256": None, "trailers": []}
        self.hashers[sid] = hashlib.sha256()
        if self.o.goaway_every and self.streams_seen >= self.o.goaway_every and self.goaway_last is None:
            self.goaway_last = sid
            self.o.count(goaways=1)
            # Written by hand: h2's own close_connection() would refuse every frame after it,
            # and the streams in progress must still be answered.
            f = GoAwayFrame(0)
            f.last_stream_id = sid
            f.error_code = 0
            self.flush()
            self.sock.sendall(f.serialize())

    def on_request_complete(self, sid: int):
        req = self.reqs.pop(sid, None)
        if req is None:
            return
        req["body_sha256"] = self.hashers.pop(sid).hexdigest()
        self.o.record(req)
        self.timers.append((time.monotonic() + H2Origin.delay(req), sid))
        self.pending_reqs[sid] = req

    def fire_timers(self):
        now = time.monotonic()
        due = [x for x in self.timers if x[0] <= now]
        self.timers = [x for x in self.timers if x[0] > now]
        for _, sid in due:
            req = self.pending_reqs.pop(sid)
            if sid not in self.active:
                continue  # reset meanwhile
            status, headers, body = self.o.respond(req)
            headers = [(":status", str(status))] + [(k, v) for k, v in headers if k != "x-no-length"]
            try:
                self.conn.send_headers(sid, headers, end_stream=body.size == 0 and not body.trailers)
            except h2.exceptions.StreamClosedError:
                self.done(sid)
                continue
            if body.size == 0 and not body.trailers:
                self.done(sid)
            else:
                self.sending[sid] = body

    def pump_bodies(self):
        for sid, body in list(self.sending.items()):
            try:
                while body.remaining:
                    n = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size,
                            body.remaining)
                    if n <= 0:
                        break
                    self.conn.send_data(sid, body.take(n))
                    self.o.count(bytes_sent=n)
                    self.flush()
                if not body.remaining:
                    if body.trailers:
                        self.conn.send_headers(sid, body.trailers, end_stream=True)
                    else:
                        self.conn.end_stream(sid)
                    self.done(sid)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                self.done(sid)

    def done(self, sid: int):
        self.active.discard(sid)
        self.sending.pop(sid, None)
        self.reqs.pop(sid, None)


# ----------------------------------------------------------------------------------------------
# Clients


def h1_request(port: int, method: str, path: str, headers=None, body: bytes | None = None,
               timeout: float = 30.0, **kw):
    """One HTTP/1.1 request on a new connection to weir."""
    with HttpConn(port, timeout=timeout) as c:
        return c.request(method, path, headers, body, **kw)


def wait_for(predicate, timeout: float, what: str, detail=None, interval: float = 0.1):
    """wait_until, with detail() (state read when it fails, e.g. an origin's summary) in the
    failure message."""
    try:
        return wait_until(predicate, timeout, interval, what)
    except AssertionError as e:
        raise AssertionError(f"{e}; {detail()}" if detail else str(e)) from None


def record_of(tc, resp, what: str) -> dict:
    """The origin's JSON record of the request from a response body (HTTP/1.1 or H2Stream)."""
    body = bytes(resp.body)
    try:
        return json.loads(body)
    except ValueError:
        tc.fail(f"{what}: not the origin's JSON record: status {resp.status}, body {body[:300]!r}")


class UpstreamH2Case(TlsTestCase):
    """Helpers: origins cleaned up, weir (https + plain h2c listener + admin) in front of them."""

    def origin(self, name: str = "origin", **kw) -> H2Origin:
        o = H2Origin(name, **kw)
        self.addCleanup(o.stop)
        return o

    def lb(self, origins, protocol: str = "h2c", workers: int = 1, backend_extra: dict | None = None,
           tls: dict | None = None, **kw):
        servers = []
        for o in origins:
            s = {"address": o.address, "name": o.name}
            if tls is not None:
                s["tls"] = dict(tls)
            servers.append(s)
        be = {"protocol": protocol, "timeouts": {"response": "20s"}}
        be.update(backend_extra or {})
        return self.start_tls_lb(servers, backend_extra=be, workers=workers, **kw)


# ----------------------------------------------------------------------------------------------
# The tests


class H2cBackendTest(UpstreamH2Case):
    def setUp(self):
        super().setUp()
        self.o = self.origin("h2c-origin")
        self.weir = self.lb([self.o])

    def check_common(self, rec: dict, method: str, path: str, what: str):
        self.assertEqual(rec["protocol"], "h2", f"{what}: the origin did not get HTTP/2")
        self.assertEqual((rec["method"], rec["path"]), (method, path), what)
        # :scheme: the origin's ("http") or the client's: both are seen in proxies, not asserted.
        self.assertIn(rec["scheme"], ("http", "https"), f"{what}: :scheme")
        self.assertTrue(rec["authority"] or dict(rec["headers"]).get("host"), f"{what}: no :authority nor host")

    def test_http11_client_get_post_big_response(self):
        port = self.weir.plain_port
        with HttpConn(port, timeout=30) as c:
            r = c.get("/get?x=1")
            self.assertEqual(r.status, 200, f"GET through weir: {r!r} {r.text[:300]}")
            rec = record_of(self, r, "GET")
            self.check_common(rec, "GET", "/get?x=1", "HTTP/1.1 GET")
            hs = dict(rec["headers"])
            self.assertTrue(rec["authority"] == "example.test" or hs.get("host") == "example.test",
                            f"the Host did not become :authority (or host): {rec}")
            # Response headers pass: both Set-Cookie fields, the origin's own fields.
            self.assertEqual(r.header("x-origin"), "h2c-origin", r.headers)
            self.assertEqual(r.header("content-type"), "application/json", r.headers)
            self.assertEqual(sorted(r.header_all("set-cookie")), ["a=1; Path=/", "b=2; Path=/"], r.headers)
            # POST, 1 MiB, on the same keep-alive connection.
            body = random.Random(1).randbytes(MB)
            r = c.request("POST", "/post", body=body)
            self.assertEqual(r.status, 200, f"POST 1 MiB: {r!r} {r.text[:300]}")
            rec = record_of(self, r, "POST")
            self.check_common(rec, "POST", "/post", "HTTP/1.1 POST")
            self.assertEqual((rec["body_len"], rec["body_sha256"]), (MB, sha(body)), "the 1 MiB body reached the origin altered")
            # A chunked request body.
            chunks = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in (body[:1000], body[1000:70000])) + b"0\r\n\r\n"
            c.send(build_request("POST", "/chunked", [("Transfer-Encoding", "chunked")], chunks))
            r = c.read_response()
            self.assertEqual(r.status, 200, f"chunked POST: {r!r} {r.text[:300]}")
            rec = record_of(self, r, "chunked POST")
            self.assertEqual((rec["body_len"], rec["body_sha256"]), (70000, sha(body[:70000])))
            self.assertNotIn("transfer-encoding", dict(rec["headers"]))
            # 5 MiB answer.
            n = 5 * MB
            r = c.get(f"/big?size={n}")
            self.assertEqual(r.status, 200, f"5 MiB GET: {r!r}")
            self.assertEqual(len(r.body), n, "5 MiB answer length")
            self.assertEqual(sha(r.body), pattern_sha(n), "5 MiB answer altered")
            self.assertEqual(r.header("x-body-sha256"), pattern_sha(n))
        weir_alive(self, self.weir)

    def test_http2_client_get_post_big_response(self):
        for tls in (False, True):
            with self.subTest(client="h2 over TLS" if tls else "h2c"):
                port = self.weir.https_port if tls else self.weir.plain_port
                c = H2Conn(port, tls=tls, cafile=self.certs.ca if tls else None, keep_body=6 * MB, timeout=30)
                self.addCleanup(c.close)
                s = c.get("/get?y=2", timeout=15)
                self.assertEqual(s.status, 200, repr(s))
                rec = record_of(self, s, "h2 GET")
                self.check_common(rec, "GET", "/get?y=2", "h2 GET")
                self.assertEqual(s.header("x-origin"), "h2c-origin", s.headers)
                self.assertEqual(sorted(v for k, v in s.headers if k == "set-cookie"), ["a=1; Path=/", "b=2; Path=/"])
                body = random.Random(2).randbytes(MB)
                s = c.response(c.request("/post", "POST", body=body, end_stream=True), timeout=30)
                self.assertEqual(s.status, 200, repr(s))
                rec = record_of(self, s, "h2 POST")
                self.assertEqual((rec["body_len"], rec["body_sha256"]), (MB, sha(body)), "1 MiB h2 body altered")
                n = 5 * MB
                s = c.get(f"/big?size={n}", timeout=60)
                self.assertEqual((s.status, s.data_len), (200, n), repr(s))
                self.assertEqual(sha(bytes(s.body)), pattern_sha(n), "5 MiB answer altered")
                c.close()

    def test_hop_by_hop_request_headers_not_forwarded(self):
        r = h1_request(self.weir.plain_port, "GET", "/hop", [
            ("Connection", "keep-alive, X-Hop"), ("X-Hop", "secret"), ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"), ("TE", "trailers"), ("X-End-To-End", "kept")])
        self.assertEqual(r.status, 200, f"{r!r} {r.text[:300]}")
        rec = record_of(self, r, "hop-by-hop")
        names = [k for k, _ in rec["headers"]]
        self.assertEqual([k for k in names if k in HOP_BY_HOP], [],
                         f"hop-by-hop headers reached the h2c origin: {rec['headers']}")
        self.assertIn(dict(rec["headers"]).get("te"), (None, "trailers"), rec["headers"])
        self.assertEqual(dict(rec["headers"]).get("x-end-to-end"), "kept", rec["headers"])
        self.assertEqual([k for k in names if k != k.lower()], [], "upper-case field names sent over HTTP/2")
        # The answer to the HTTP/1.1 client is well framed, with the origin's fields.
        self.assertTrue(r.framing in ("length", "chunked"), r.framing)
        self.assertEqual(r.header("x-origin"), "h2c-origin")

    def test_trailers_both_ways(self):
        # HTTP/2 client: request trailers reach the origin, response trailers reach the client.
        c = H2Conn(self.weir.plain_port, timeout=15)
        self.addCleanup(c.close)
        sid = c.request("/trailers?trailers=1", "POST", body=b"hello", end_stream=False)
        c.send_headers([("x-req-trailer", "sent")], end_stream=True, sid=sid)
        s = c.response(sid, timeout=15)
        self.assertEqual(s.status, 200, repr(s))
        rec = record_of(self, s, "trailers")
        self.assertEqual(rec["trailers"], [["x-req-trailer", "sent"]], "request trailers did not reach the origin")
        self.assertEqual(dict(s.trailers).get("x-trailer"), "yes", f"response trailers lost: {s.trailers}")
        self.assertEqual(dict(s.trailers).get("x-checksum"), sha(bytes(s.body)))
        # HTTP/1.1 client: chunked trailers both ways.
        with HttpConn(self.weir.plain_port, timeout=15) as h:
            h.send(build_request("POST", "/trailers?trailers=1", [("Transfer-Encoding", "chunked"), ("TE", "trailers")],
                                 b"5\r\nhello\r\n0\r\nX-Req-Trailer: chunked\r\n\r\n"))
            r = h.read_response()
        self.assertEqual(r.status, 200, f"{r!r} {r.text[:300]}")
        rec = record_of(self, r, "HTTP/1.1 trailers")
        self.assertEqual(rec["trailers"], [["x-req-trailer", "chunked"]], "chunked request trailers did not reach the origin")
        self.assertEqual(r.framing, "chunked", "an answer with trailers to an HTTP/1.1 client must be chunked")
        self.assertEqual(dict((k.lower(), v) for k, v in r.trailers).get("x-trailer"), "yes",
                         f"response trailers lost for the HTTP/1.1 client: {r.trailers}")


class H2cIdleTest(UpstreamH2Case):
    def test_idle_connection_pinged_then_closed(self):
        # upstream_idle_timeout 3s: an idle connection is pinged every second, and closed after
        # 3 s without a stream; the next request opens a new one.
        o = self.origin("idle")
        lb = self.lb([o], limits={"upstream_idle_timeout": "3s"})
        r = h1_request(lb.plain_port, "GET", "/first", timeout=10)
        self.assertEqual(r.status, 200, r.text[:200])
        self.assertEqual(o.conns, 1)
        wait_for(lambda: o.pings >= 1, 5, f"no PING on the idle connection; {o.summary()}")
        self.assertEqual(o.conns, 1, "pings keep the same connection")
        # Past the idle timeout the connection is gone; a new request opens another.
        time.sleep(3.5)  # the test: longer than the 3 s idle timeout
        r = h1_request(lb.plain_port, "GET", "/second", timeout=10)
        self.assertEqual(r.status, 200, r.text[:200])
        self.assertEqual(o.conns, 2, f"the idle connection was closed after upstream_idle_timeout; {o.summary()}")


class H2cConcurrencyTest(UpstreamH2Case):
    def test_max_concurrent_streams_2(self):
        o = self.origin("two-streams", max_streams=2)
        lb = self.lb([o], backend_extra={"limits": {"queue_timeout": "20s"}})
        # HTTP/1.1 clients, each on its own connection.
        rs = run_threads(lambda i: h1_request(lb.plain_port, "GET", f"/c{i}?ms=150", timeout=30), 20, timeout=90)
        bad = [(i, r.status, r.text[:200]) for i, r in enumerate(rs) if r.status != 200]
        hint = ("; streams over the limit sent on a new connection before weir acknowledged the origin's "
                "SETTINGS were refused (REFUSED_STREAM, as nghttp2 and Go servers do) and not retried to success"
                if o.early_refused else "")
        self.assertEqual(bad, [], f"requests failed with the origin's MAX_CONCURRENT_STREAMS=2; {o.summary()}{hint}")
        # One HTTP/2 client with 20 streams at once.
        c = H2Conn(lb.plain_port, timeout=30)
        self.addCleanup(c.close)
        sids = [c.request(f"/m{i}?ms=150") for i in range(20)]
        self.assertTrue(c.run_until(lambda: all(c.stream(s).done for s in sids), 60),
                        f"not all streams ended: {[c.stream(s) for s in sids]}; {o.summary()}")
        self.assertEqual([c.stream(s).status for s in sids], [200] * 20, f"HTTP/2 client, 20 streams; {o.summary()}")
        self.assertEqual(o.violations, [], f"weir went over SETTINGS_MAX_CONCURRENT_STREAMS: {o.summary()}")
        self.assertLessEqual(o.max_concurrent, 2, o.summary())
        self.assertEqual(sorted(o.paths()), sorted([f"/c{i}?ms=150" for i in range(20)] + [f"/m{i}?ms=150" for i in range(20)]),
                         f"every request exactly once at the origin; {o.summary()}")
        print(f"\nMAX_CONCURRENT_STREAMS=2: {o.summary()}")

    def test_goaway_every_10_streams_no_failed_request(self):
        o = self.origin("goaway", goaway_every=10)
        lb = self.lb([o], workers=2, backend_extra={"retries": 2})
        total, conc = 200, 8
        failures, lock = [], threading.Lock()

        def client(i):
            rnd = random.Random(i)
            c = HttpConn(lb.plain_port, timeout=30)
            try:
                for k in range(total // conc):
                    path = f"/load/{i}/{k}?ms={rnd.randint(0, 15)}"
                    post = k % 3 == 0
                    try:
                        r = c.request("POST" if post else "GET", path, body=b"p" * 3000 if post else None)
                        ok = r.status == 200 and record_of(self, r, path)["path"] == path
                        if not ok:
                            with lock:
                                failures.append(f"{path}: {r.status} {r.text[:120]!r}")
                        if (r.header("connection") or "").lower() == "close":
                            c.close()
                            c = HttpConn(lb.plain_port, timeout=30)
                    except Exception as e:  # noqa: BLE001
                        with lock:
                            failures.append(f"{path}: {e!r}")
                        c.close()
                        c = HttpConn(lb.plain_port, timeout=30)
            finally:
                c.close()

        t0 = time.monotonic()
        run_threads(client, conc, timeout=150)
        print(f"\nGOAWAY every 10 streams: {total} requests in {time.monotonic() - t0:.1f}s; {o.summary()}")
        self.assertEqual(failures, [], f"{len(failures)} failed requests; {o.summary()}")
        self.assertGreaterEqual(o.goaways, 10, f"the load did not make the origin send GOAWAYs: {o.summary()}")
        paths = o.paths()
        dup = {p for p in paths if paths.count(p) > 1}
        self.assertEqual(dup, set(), f"requests processed twice by the origin (retried after a GOAWAY that "
                                     f"covered them): {sorted(dup)[:5]}")
        self.assertEqual(len(paths), total, o.summary())
        weir_alive(self, lb)

    def test_refused_stream_retried(self):
        a = self.origin("refuser", refuse_all=True)
        b = self.origin("good")
        lb = self.lb([a, b], backend_extra={"retries": 2, "balance": "round_robin"})
        results = []
        with HttpConn(lb.plain_port, timeout=30) as c:
            for i in range(12):
                if i % 2:
                    r = c.request("POST", f"/p{i}", body=b"x" * 5000)
                else:
                    r = c.get(f"/g{i}")
                results.append((i, r.status, r.header("x-origin")))
        bad = [x for x in results if x[1] != 200 or x[2] != "good"]
        self.assertEqual(bad, [], f"REFUSED_STREAM not retried on the other server; {a.summary()}; {b.summary()}")
        self.assertGreater(a.refused, 0, f"weir never tried the refusing server: {a.summary()}")
        self.assertEqual(len(b.paths()), 12, b.summary())


class AutoProtocolTest(UpstreamH2Case):
    def test_auto_picks_by_alpn(self):
        o2 = self.origin("alpn-h2", tls_cert=self.certs.backend, alpn=("h2",))
        o1 = self.origin("alpn-h1", tls_cert=self.certs.backend, alpn=("http/1.1",))
        tls = {"ca": self.certs.ca, "sni": "backend.test"}
        backends = [{"name": "auto-h2", "protocol": "auto", "servers": [{"address": o2.address, "name": "h2", "tls": tls}]},
                    {"name": "auto-h1", "protocol": "auto", "servers": [{"address": o1.address, "name": "h1", "tls": tls}]}]
        routes = [{"match": {"path_prefix": "/h2/"}, "backend": "auto-h2"}, {"backend": "auto-h1"}]
        lb = self.start_tls_lb([], backends=backends, routes=routes)
        r = h1_request(lb.plain_port, "GET", "/h2/x")
        self.assertEqual(r.status, 200, f"{r!r} {r.text[:300]}; {o2.summary()}")
        rec = record_of(self, r, "auto with ALPN h2")
        self.assertEqual((rec["protocol"], r.header("x-origin")), ("h2", "alpn-h2"),
                         "protocol: auto with an origin offering ALPN h2 did not speak HTTP/2")
        r = h1_request(lb.plain_port, "GET", "/h1/x")
        self.assertEqual(r.status, 200, f"{r!r} {r.text[:300]}; {o1.summary()}")
        rec = record_of(self, r, "auto with ALPN http/1.1")
        self.assertEqual((rec["protocol"], r.header("x-origin")), ("http/1.1", "alpn-h1"),
                         "protocol: auto with an origin offering only http/1.1 did not speak HTTP/1.1")
        # An HTTP/2 client to both.
        c = H2Conn(lb.plain_port, timeout=15)
        self.addCleanup(c.close)
        for path, proto in (("/h2/y", "h2"), ("/h1/y", "http/1.1")):
            s = c.get(path, timeout=15)
            self.assertEqual(s.status, 200, repr(s))
            self.assertEqual(record_of(self, s, path)["protocol"], proto, path)


class SlowClientMemoryTest(UpstreamH2Case):
    def test_slow_http11_client_50mib(self):
        o = self.origin("big", sndbuf=256 * 1024)
        lb = self.lb([o])
        n = 50 * MB
        r = h1_request(lb.plain_port, "GET", "/warm?size=1000000")
        self.assertEqual((r.status, len(r.body)), (200, 1000000), repr(r))
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.settimeout(30)
        self.addCleanup(s.close)
        s.connect((HOST, lb.plain_port))
        base_sent = o.bytes_sent
        peak = PeakRss(lb.pid)
        s.sendall(build_request("GET", f"/slow?size={n}"))
        got = bytearray()
        while b"\r\n\r\n" not in got:
            d = s.recv(65536)
            self.assertTrue(d, "weir closed before the answer's head")
            got += d
        head, _, rest = bytes(got).partition(b"\r\n\r\n")
        self.assertIn(b" 200 ", head.split(b"\r\n")[0], head[:300])
        read = len(rest)
        body_start = rest
        while read < MB:
            d = s.recv(65536)
            self.assertTrue(d, "weir closed early")
            body_start += d
            read += len(d)
        # Stop reading: with flow control tied to this client, the origin is held back.
        last = [-1]

        def settled():
            cur = o.bytes_sent
            same = cur == last[0]
            last[0] = cur
            return same

        wait_until(settled, 15, 1.0, "the origin to stop sending while the client does not read")
        sent_while_stalled = o.bytes_sent - base_sent
        growth = peak.growth()
        print(f"\nslow client stalled after {read / MB:.1f} MiB read: the origin had sent {sent_while_stalled / MB:.1f} MiB, "
              f"weir RSS high-water +{growth / MB:.1f} MiB (now {rss(lb.pid) / MB:.1f} MiB)")
        self.assertLess(sent_while_stalled, read + 24 * MB,
                        f"the origin sent {sent_while_stalled / MB:.1f} MiB while the client had read {read / MB:.1f} MiB: "
                        "weir does not tie the upstream flow control to the client's reading")
        # Now read the rest, slowly at first, and check it.
        chunked = b"chunked" in head.lower()
        data = bytearray(body_start)
        t0 = time.monotonic()
        while True:
            if time.monotonic() - t0 < 2:
                time.sleep(0.01)
            try:
                d = s.recv(1 << 18)
            except socket.timeout:
                self.fail(f"the answer stalled after {len(data)} bytes")
            if not d:
                break
            data += d
            if not chunked and len(data) >= n:
                break
            if chunked and data.endswith(b"0\r\n\r\n"):
                break
        body = bytes(data)
        if chunked:
            out, pos = bytearray(), 0
            while True:
                eol = body.index(b"\r\n", pos)
                size = int(body[pos:eol].split(b";")[0], 16)
                if size == 0:
                    break
                out += body[eol + 2:eol + 2 + size]
                pos = eol + 2 + size + 2
            body = bytes(out)
        self.assertEqual(len(body), n, "50 MiB answer length")
        self.assertEqual(sha(body), pattern_sha(n), "50 MiB answer altered")
        peak.check(self, budget=40 * MB, what="a slow HTTP/1.1 client reading 50 MiB from an h2c origin")
        weir_alive(self, lb)


class H2cHealthTest(UpstreamH2Case):
    def test_health_check_speaks_h2c(self):
        o = self.origin("h2c-only")  # answers HTTP/1.1 with 505 (counted)
        check = {"type": "http", "path": "/healthz", "interval": "300ms", "timeout": "300ms", "rise": 1, "fall": 2}
        lb = self.lb([o], backend_extra={"health_check": check})
        srv = lambda: lb.weir.server("web", "h2c-only")  # noqa: E731
        detail = lambda: f"{srv()}; {o.summary()}"  # noqa: E731
        wait_for(lambda: srv()["probes_passed"] >= 3, 10,
                 "3 passing probes of the h2c-only origin (weir must probe it over HTTP/2)", detail)
        self.assertEqual(o.h1_rejected, 0, f"weir probed the h2c backend over HTTP/1.1: {o.summary()}")
        self.assertIn("/healthz", o.paths(), o.summary())
        self.assertIs(srv()["healthy"], True, srv())
        self.assertEqual(lb.metrics().get("weir_server_up", backend="web", server="h2c-only"), 1)
        r = h1_request(lb.plain_port, "GET", "/traffic")
        self.assertEqual((r.status, r.header("x-origin")), (200, "h2c-only"), f"{r!r} {r.text[:200]}")
        # 503 on the health path: down, and requests get 503 from weir.
        o.health = 503
        wait_for(lambda: srv()["healthy"] is False, 10, "the server to go down after 503 probes", detail)
        self.assertEqual(lb.metrics().get("weir_server_up", backend="web", server="h2c-only"), 0)
        r = h1_request(lb.plain_port, "GET", "/while-down")
        self.assertEqual(r.status, 503, f"{r!r} {r.text[:200]}")
        self.assertNotIn("/while-down", o.paths())
        o.health = 200
        wait_for(lambda: srv()["healthy"] is True, 10, "the server to come back up", detail)
        r = h1_request(lb.plain_port, "GET", "/again")
        self.assertEqual(r.status, 200, f"{r!r} {r.text[:200]}")
        self.assertEqual(o.h1_rejected, 0, o.summary())


class ProtocolConfigTest(UpstreamH2Case):
    def check(self, text: str, name: str):
        path = self.write_config(text, name)
        p = self.run_weir("check", "-c", path)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"), path

    def config(self, backend_lines: list[str], server_lines: list[str] = ()) -> str:
        """A config whose backend block starts on line 6; backend_lines follow `- name: b` (line 6),
        then `servers:` and one server with server_lines."""
        lines = ["listeners:", "  - name: web", "    listen: 127.0.0.1:8080", "    backend: b", "backends:",
                 "  - name: b", *[f"    {x}" for x in backend_lines], "    servers:",
                 "      - address: 127.0.0.1:9001", *[f"        {x}" for x in server_lines]]
        return "\n".join(lines) + "\n"

    def errors(self, se: str, path: str):
        out = []
        for line in se.splitlines():
            m = LOC.match(line)
            if m and m["file"] == path:
                out.append((int(m["line"]), int(m["col"]), m["msg"]))
        return out

    def test_valid_protocols_pass(self):
        ca = self.certs.ca
        cases = {
            "http1": self.config(["protocol: http1"]),
            "h2c": self.config(["protocol: h2c"]),
            "h2": self.config(["protocol: h2"], ["tls:", f"  ca: {ca}", "  sni: backend.test"]),
            "auto": self.config(["protocol: auto"], ["tls:", f"  ca: {ca}"]),
        }
        for proto, text in cases.items():
            with self.subTest(protocol=proto):
                rc, so, se, _ = self.check(text, f"ok-{proto}.yaml")
                self.assertEqual(rc, 0, f"`protocol: {proto}` refused by weir check:\n{se}")

    def test_unknown_protocol_h3(self):
        rc, so, se, path = self.check(self.config(["protocol: h3"]), "h3.yaml")
        self.assertEqual(rc, 1, f"protocol: h3 accepted:\n{so}{se}")
        errs = self.errors(se, path)
        self.assertTrue(errs, f"no FILE:LINE:COL error:\n{se}")
        self.assertIn(7, [l for l, _, _ in errs], f"the error is not at the protocol line (7):\n{se}")
        msg = " ".join(m for l, _, m in errs if l == 7)
        self.assertNotIn("unknown key", msg, f"`protocol` itself is not known:\n{se}")
        self.assertIn("h3", msg, f"the message does not name the bad value:\n{se}")

    def test_h2_needs_tls(self):
        rc, so, se, path = self.check(self.config(["protocol: h2"]), "h2-notls.yaml")
        self.assertEqual(rc, 1, f"protocol: h2 without servers[].tls accepted:\n{so}{se}")
        errs = self.errors(se, path)
        self.assertTrue(errs, f"no FILE:LINE:COL error:\n{se}")
        self.assertTrue(any(6 <= l <= 9 and "tls" in m.lower() for l, _, m in errs),
                        f"no error about tls in the backend (lines 6-9):\n{se}")
        self.assertNotIn("unknown key", se, se)

    def test_proxy_protocol_with_multiplexing(self):
        for proto in ("h2c", "h2"):
            with self.subTest(protocol=proto):
                server = ["tls:", f"  ca: {self.certs.ca}"] if proto == "h2" else []
                rc, so, se, path = self.check(self.config([f"protocol: {proto}", "send_proxy_protocol: v2"], server),
                                              f"pp-{proto}.yaml")
                self.assertEqual(rc, 1, f"send_proxy_protocol with protocol {proto} accepted:\n{so}{se}")
                errs = self.errors(se, path)
                self.assertTrue(any(6 <= l <= 9 and "proxy" in m.lower() for l, _, m in errs),
                                f"no FILE:LINE:COL error about send_proxy_protocol in the backend:\n{se}")
                self.assertNotIn("unknown key", se, se)


if __name__ == "__main__":
    unittest.main()
