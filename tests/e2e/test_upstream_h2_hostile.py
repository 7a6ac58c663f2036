"""A hostile or broken HTTP/2 server behind weir (backend `protocol: h2c`): what the client gets,
that weir keeps serving afterwards, that nothing grows or spins.

The hostile servers are RawOrigin: raw sockets, frames built by hand (9-byte header + payload)
and header blocks in stateless HPACK (literals without indexing), so they can send what a real
HTTP/2 library refuses to. Each connection runs `on_connect` (by default: SETTINGS) and then
answers each request with the origin's current `respond` (looked up per request, so a test can
turn the origin good); every socket has a timeout, every thread ends at cleanup.

weir runs with a plain listener (HTTP/1.1 and h2c clients) routing /good/ to a healthy python3-h2
origin (H2Origin of test_upstream_h2) and everything else to the hostile one (backend
`hostile`: `retries: 0` unless a case says otherwise, `timeouts: {connect: 1s, response: 2s}`).

Cases (each checks, at its end, that weir still answers through the hostile origin turned good
and through the good backend; the harness checks weir's stderr for sanitizer reports):
 1. a response header block over 64 KiB (many fields; one huge value over CONTINUATIONs) → 502;
 2. endless CONTINUATION frames (never END_HEADERS) → the request fails, RSS bounded;
 3. DATA far beyond the stream's flow-control window: with a client that does not read (32 MiB)
    the stream is reset and the answer cut; with a fast client (1 MiB) weir may take it all as
    the client drains it (it re-credits the window at once), never a hang, RSS bounded;
 4. content-length 100 with 50 bytes, and 50 with 100 bytes → never a complete-looking answer
    (HTTP/1.1: closed before the length; HTTP/2: RST_STREAM);
 5. a server that never answers → 504 after the response timeout; one that stalls mid-body →
    the client's response is cut after the timeout (HTTP/2 client: RST_STREAM);
 6. PING and SETTINGS floods from the server, its ACKs read or not → RSS bounded, no CPU spin;
 7. HEADERS on an even stream, DATA / WINDOW_UPDATE / RST_STREAM on idle streams, PUSH_PROMISE
    → 502 at once with one server; retried on the other server of a two-server backend;
 8. an invalid :status ("abc", "99", missing, doubled, ...) → 502;
    8b. a 103 whose field block ends in a later CONTINUATION (the exchange must not take it
        before the block ended: found crashing, heap-buffer-overflow in H2Channel::add_field);
    8c. 10,000 103 heads to clients that do not read: RSS bounded; 103 every 0.4 s and never a
        final head: 504 after the response timeout;
    8d. SETTINGS_MAX_CONCURRENT_STREAMS=0 with a request waiting on the connection, and
        REFUSED_STREAM for every stream: bounded failures;
    8e. a server that never sends SETTINGS: 504 for the first and a waiting second request;
 9. GOAWAY(last_stream_id=0) right after the preface on every connection → 502/503 in bounds,
    few connections, no busy loop;
10. the connection closed mid-body on every request, 200 requests → each cut (or 502 for the
    streams that shared the connection), no RSS/fd leak;
11. a server with SETTINGS_INITIAL_WINDOW_SIZE=0 that never reads, a 10 MiB upload → weir does
    not buffer the upload, the request ends (504).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
import unittest

import hpack

from test_upstream_h2 import H2Origin
from tlstest import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, MB, PADDED, PING,
                     PRIORITY_FLAG, PUSH_PROMISE, RST_STREAM, S_HEADER_TABLE_SIZE, S_INITIAL_WINDOW_SIZE,
                     SETTINGS, WINDOW_UPDATE, H2Conn, PeakRss, err_name, frame, goaway_frame, hpack_literal,
                     ping_frame, settings_frame)
from weirtest import HOST, HttpConn, IncompleteResponse, WeirTestCase, build_request, free_port, rss, wait_until

IO = 10.0
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_FRAME = 16384            # weir's SETTINGS_MAX_FRAME_SIZE towards servers (the default)
RESPONSE_TIMEOUT = 2.0       # the hostile backend's timeouts.response
RSS_BOUND = 40 * MB          # generous: ASan
_STATIC = {":status": 8, "content-length": 28, "content-type": 31}


def block(fields) -> bytes:
    """A header block of literals without indexing (static-table names where there is one):
    the same bytes whatever was sent before, any value allowed."""
    return b"".join(hpack_literal(k, v, name_index=_STATIC.get(k)) for k, v in fields)


def headers_frames(sid: int, blk: bytes, end_stream: bool = False, end_headers: bool = True) -> bytes:
    """HEADERS plus CONTINUATIONs of at most MAX_FRAME bytes; END_HEADERS on the last unless not
    `end_headers`."""
    first, rest = blk[:MAX_FRAME], blk[MAX_FRAME:]
    flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers and not rest else 0)
    out = [frame(HEADERS, flags, sid, first)]
    while rest:
        chunk, rest = rest[:MAX_FRAME], rest[MAX_FRAME:]
        out.append(frame(CONTINUATION, END_HEADERS if end_headers and not rest else 0, sid, chunk))
    return b"".join(out)


def data_frames(sid: int, payload: bytes, end_stream: bool = False) -> bytes:
    out = []
    pos = 0
    while True:
        chunk = payload[pos:pos + MAX_FRAME]
        pos += len(chunk)
        last = pos >= len(payload)
        out.append(frame(DATA, END_STREAM if last and end_stream else 0, sid, chunk))
        if last:
            return b"".join(out)


def head(status="200", length: int | None = None, extra=()) -> list:
    fields = [(":status", status)] if status is not None else []
    if length is not None:
        fields.append(("content-length", str(length)))
    return fields + list(extra)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# ----------------------------------------------------------------------------------------------
# The hostile origin


class Closed(Exception):
    """The peer closed (or the origin stops): the connection's thread ends."""


class RawConn:
    """One server connection of a RawOrigin, after the client preface."""

    def __init__(self, origin: "RawOrigin", sock: socket.socket, n: int):
        self.o, self.sock, self.n = origin, sock, n
        self.buf = bytearray()
        self.dec = hpack.Decoder(max_header_list_size=1 << 20)
        self.auto_ack = True
        self.started = False      # our SETTINGS went: acks before that would be the first frame
        self._held_acks: list[bytes] = []
        self.requests: list[tuple[int, dict, bool]] = []
        self._hdr: tuple[int, int, bytearray] | None = None   # (sid, flags, block) being received

    # -- sending

    def send(self, data: bytes, timeout: float = IO):
        if self.o.stopping():
            raise Closed("origin stopped")
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
            raise Closed(f"send: {e!r}") from None

    def start(self, settings: dict | None = None):
        self.started = True
        self.send(settings_frame(settings or {}) + b"".join(self._held_acks))
        self._held_acks.clear()

    def _ack(self, data: bytes):
        if self.started:
            self.send(data)
        elif len(self._held_acks) < 100:
            self._held_acks.append(data)

    def respond(self, sid: int, fields, body: bytes | None = None):
        out = headers_frames(sid, block(fields), end_stream=body is None)
        if body is not None:
            out += data_frames(sid, body, end_stream=True)
        self.send(out)

    # -- receiving

    def _parse_one(self):
        if len(self.buf) < 9:
            return None
        n = int.from_bytes(self.buf[:3], "big")
        if len(self.buf) < 9 + n:
            return None
        ftype, flags = self.buf[3], self.buf[4]
        sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
        payload = bytes(self.buf[9:9 + n])
        del self.buf[:9 + n]
        self._handle(ftype, flags, sid, payload)
        return ftype, flags, sid, payload

    def _handle(self, ftype, flags, sid, payload):
        self.o.count(f"in:{ftype}")
        if ftype == SETTINGS and not flags & ACK and self.auto_ack:
            self._ack(settings_frame(ack=True))
        elif ftype == PING and not flags & ACK and self.auto_ack:
            self._ack(ping_frame(payload, ack=True))
        elif ftype == GOAWAY:
            last, code = struct.unpack(">II", payload[:8])
            self.o.note("goaway", err_name(code))
        elif ftype == RST_STREAM:
            self.o.note("rst", err_name(int.from_bytes(payload[:4], "big")))
        elif ftype == HEADERS:
            p = payload
            if flags & PADDED:
                p = p[1:len(p) - p[0]]
            if flags & PRIORITY_FLAG:
                p = p[5:]
            self._hdr = (sid, flags, bytearray(p))
        elif ftype == CONTINUATION and self._hdr is not None:
            self._hdr[2].extend(payload)
            self._hdr = (self._hdr[0], self._hdr[1] | (flags & END_HEADERS), self._hdr[2])
        if self._hdr is not None and self._hdr[1] & END_HEADERS:
            s, fl, blk = self._hdr
            self._hdr = None
            fields = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.dec.decode(bytes(blk), raw=True)}
            self.requests.append((s, fields, bool(fl & END_STREAM)))
            self.o.count("requests")

    def _fill(self, timeout: float) -> bool:
        """Reads what comes within timeout (at most 0.2 s at a time); False on timeout."""
        if self.o.stopping():
            raise Closed("origin stopped")
        self.sock.settimeout(max(0.001, min(timeout, 0.2)))
        try:
            d = self.sock.recv(1 << 16)
        except socket.timeout:
            return False
        except OSError as e:
            raise Closed(f"recv: {e!r}") from None
        if not d:
            raise Closed("EOF")
        self.buf += d
        return True

    def frame(self, timeout: float = IO):
        """The next frame (type, flags, sid, payload), handled (acks, requests); None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            f = self._parse_one()
            if f is not None:
                return f
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._fill(left)

    def drain(self):
        """Handles whatever has arrived, without waiting."""
        while self._parse_one() is not None:
            pass
        while self._fill(0.001):
            while self._parse_one() is not None:
                pass

    def request(self, timeout: float = 60.0):
        """(sid, fields, end_stream) of the next request; raises Closed after timeout idle."""
        deadline = time.monotonic() + timeout
        while not self.requests:
            if self.frame(max(0.0, deadline - time.monotonic())) is None and time.monotonic() >= deadline:
                raise Closed("no request")
        return self.requests.pop(0)

    def hold(self, timeout: float = 30.0):
        """Reads (and acks) whatever comes until the peer closes, the origin stops or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.frame(deadline - time.monotonic())
        raise Closed("held long enough")

    def sleep(self, timeout: float = 30.0):
        """Reads nothing at all until the origin stops, the connection is dropped or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.o.stopping() and self.n not in self.o.dropped:
            time.sleep(0.1)
        raise Closed("slept")


def good_respond(conn: RawConn, sid: int, fields: dict, end_stream: bool):
    body = f"good {fields.get(':path')}\n".encode()
    conn.respond(sid, head("200", len(body), [("x-origin", conn.o.name)]), body)


class RawOrigin:
    """A hand-made HTTP/2 (h2c) server on 127.0.0.1; see the module doc."""

    def __init__(self, name: str, respond=good_respond, on_connect=None, rcvbuf: int | None = None):
        self.name = name
        self.respond = respond
        self.on_connect = on_connect
        self.lock = threading.Lock()
        self.conns = 0
        self.counts: dict[str, int] = {}
        self.notes: dict[str, list] = {}
        self.errors: list[str] = []
        self.dropped: set[int] = set()
        self._stop = threading.Event()
        self._socks: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:  # inherited by accepted sockets: weir's writes back up soon
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((HOST, 0))
        self.sock.listen(256)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.address = f"{HOST}:{self.port}"
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)

    def stopping(self) -> bool:
        return self._stop.is_set()

    def count(self, key: str, n: int = 1):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def note(self, key: str, value):
        with self.lock:
            lst = self.notes.setdefault(key, [])
            if len(lst) < 1000:
                lst.append(value)

    def get(self, key: str) -> int:
        with self.lock:
            return self.counts.get(key, 0)

    def summary(self) -> str:
        with self.lock:
            notes = {k: (v[:6] if len(v) <= 6 else v[:6] + [f"... {len(v)}"]) for k, v in self.notes.items()}
            return (f"origin {self.name}: {self.conns} connections, {self.counts.get('requests', 0)} requests, "
                    f"notes {notes}, errors {self.errors[:3]}")

    def set(self, respond=good_respond, on_connect=None):
        """New behaviour, and the connections open now are dropped (their threads may be stuck in
        the old behaviour's stalls)."""
        self.respond, self.on_connect = respond, on_connect
        self.drop()

    def drop(self):
        with self.lock:
            socks = dict(self._socks)
            self.dropped.update(socks)
        for s in socks.values():
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self.drop()
        for t in list(self._threads):
            t.join(5)

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.conns += 1
                n = self.conns
                self._socks[n] = c
                self._threads = [x for x in self._threads if x.is_alive()]
            t = threading.Thread(target=self._serve, args=(c, n), daemon=True)
            with self.lock:
                self._threads.append(t)
            t.start()

    def _serve(self, c: socket.socket, n: int):
        try:
            c.settimeout(IO)
            got = b""
            while len(got) < len(PREFACE):
                d = c.recv(len(PREFACE) - len(got))
                if not d:
                    return
                got += d
            if got != PREFACE:
                self.note("bad-preface", got[:30])
                return
            conn = RawConn(self, c, n)
            on_connect = self.on_connect
            if on_connect is not None:
                on_connect(conn)
            else:
                conn.start()
            while True:
                sid, fields, end = conn.request()
                if self.respond(conn, sid, fields, end) == "close":
                    return
        except (Closed, socket.timeout, ConnectionError):
            pass
        except Exception as e:  # noqa: BLE001 - recorded; the tests print the summary
            if not self._stop.is_set():
                with self.lock:
                    self.errors.append(f"conn {n}: {e!r}")
        finally:
            with self.lock:
                self._socks.pop(n, None)
            try:
                c.close()
            except OSError:
                pass


# ----------------------------------------------------------------------------------------------
# What a client got


class Outcome:
    """One HTTP/1.1 exchange through weir: kind is complete (a whole response as framed), cut
    (the head came, then the connection closed before the body's end), closed (no response byte)
    or timeout (nothing ended within the client's timeout)."""

    def __init__(self, kind: str, status: int = 0, framing: str = "", body_len: int = 0, declared=None,
                 elapsed: float = 0.0, detail: str = ""):
        self.kind, self.status, self.framing, self.body_len = kind, status, framing, body_len
        self.declared, self.elapsed, self.detail = declared, elapsed, detail

    def __repr__(self):
        return (f"<{self.kind} {self.status} {self.framing} {self.body_len}B"
                f"{'' if self.declared is None else f' of {self.declared}'} after {self.elapsed:.2f}s"
                f"{' ' + self.detail if self.detail else ''}>")


def read_outcome(c: HttpConn, method: str, t0: float) -> Outcome:
    """The final answer (1xx heads skipped, 101 aside)."""
    try:
        r = c.read_head()
        while 100 <= r.status < 200 and r.status != 101:
            r = c.read_head()
    except IncompleteResponse as e:
        return Outcome("closed", elapsed=time.monotonic() - t0, detail=str(e))
    except socket.timeout:
        return Outcome("timeout", elapsed=time.monotonic() - t0)
    te = (r.header("transfer-encoding") or "").lower()
    cl = r.header("content-length")
    got = 0
    try:
        if method == "HEAD" or r.status in (204, 304):
            return Outcome("complete", r.status, "none", 0, elapsed=time.monotonic() - t0)
        if "chunked" in te:
            while True:
                size = int(c._read_line().split(b";")[0].strip(), 16)
                if size == 0:
                    while c._read_line():
                        pass
                    return Outcome("complete", r.status, "chunked", got, elapsed=time.monotonic() - t0)
                while len(c.buf) < size + 2:
                    if not c._fill():
                        got += min(len(c.buf), size)
                        raise IncompleteResponse("closed in a chunk")
                c._take(size + 2)
                got += size
        if cl is not None:
            need = int(cl)
            while len(c.buf) < need:
                if not c._fill():
                    got = len(c.buf)
                    raise IncompleteResponse("closed before the length")
            c._take(need)
            return Outcome("complete", r.status, "length", need, need, elapsed=time.monotonic() - t0)
        while c._fill():
            pass
        return Outcome("complete", r.status, "close", len(c.buf), elapsed=time.monotonic() - t0)
    except IncompleteResponse as e:
        return Outcome("cut", r.status, "chunked" if "chunked" in te else "length", got,
                       int(cl) if cl is not None else None, time.monotonic() - t0, str(e))
    except socket.timeout:
        return Outcome("timeout", r.status, "chunked" if "chunked" in te else "length", got,
                       int(cl) if cl is not None else None, time.monotonic() - t0)


def h1(port: int, path: str, method: str = "GET", body: bytes | None = None, timeout: float = 15.0) -> Outcome:
    t0 = time.monotonic()
    with HttpConn(port, timeout=timeout) as c:
        c.send(build_request(method, path, body=body))
        return read_outcome(c, method, t0)


# ----------------------------------------------------------------------------------------------
# The tests


class Lb:
    def __init__(self, weir, port: int):
        self.weir, self.port, self.proc = weir, port, weir.proc

    @property
    def pid(self) -> int:
        return self.weir.pid


class HostileCase(WeirTestCase):
    def origin(self, name: str = "hostile", respond=good_respond, on_connect=None, **kw) -> RawOrigin:
        o = RawOrigin(name, respond, on_connect, **kw)
        self.addCleanup(o.stop)
        return o

    def lb(self, hostile: RawOrigin, *, workers: int = 1, retries: int = 0, response: str = "2s",
           hostile_extra: dict | None = None, pair: list[RawOrigin] | None = None) -> Lb:
        """weir: /good/ → the good origin, /pair/ → backend `pair` (the `pair` origins, round robin,
        retries: 1, a wide retry budget), the rest → the hostile origin."""
        good = H2Origin("good")
        self.addCleanup(good.stop)
        self.good = good
        port, admin = free_port(), free_port()
        while admin == port:
            admin = free_port()
        hb = {"name": "hostile", "protocol": "h2c", "retries": retries,
              "timeouts": {"connect": "1s", "response": response},
              "servers": [{"address": hostile.address, "name": "hostile"}]}
        hb.update(hostile_extra or {})
        cfg = {"workers": workers, "admin": {"listen": f"{HOST}:{admin}"},
               "listeners": [{"name": "plain", "listen": f"{HOST}:{port}", "h2c": True,
                              "timeouts": {"body": "3s"},
                              "routes": [{"match": {"path_prefix": "/good/"}, "backend": "good"},
                                         {"match": {"path_prefix": "/pair/"}, "backend": "pair"},
                                         {"backend": "hostile"}]}],
               "backends": [hb, {"name": "good", "protocol": "h2c", "timeouts": {"response": "10s"},
                                 "servers": [{"address": good.address, "name": "good"}]}]}
        if pair:
            cfg["backends"].append({"name": "pair", "protocol": "h2c", "retries": 1, "balance": "round_robin",
                                    "retry_budget": {"percent": 100, "min_retries": 100},
                                    "timeouts": {"connect": "1s", "response": response},
                                    "servers": [{"address": x.address, "name": x.name} for x in pair]})
        else:
            cfg["listeners"][0]["routes"].pop(1)
        w = self.start_weir(cfg, port=port, admin_port=admin, filename=f"weir-{port}.yaml")
        return Lb(w, port)

    def alive(self, lb: Lb):
        self.assertTrue(lb.proc.alive(), f"weir exited with {lb.proc.returncode()}:\n{lb.proc.stderr()[-3000:]}")
        self.assertNotIn("Sanitizer", lb.proc.stderr(), lb.proc.stderr()[-3000:])

    def still_serving(self, lb: Lb, o: RawOrigin, what: str):
        """weir alive, the hostile origin turned good answers through weir, and so does the good
        backend."""
        self.alive(lb)
        o.set(good_respond)
        time.sleep(0.2)  # weir sees the dropped connections close
        r = h1(lb.port, "/after")
        if not (r.kind == "complete" and r.status == 200):
            r = h1(lb.port, "/after-again")  # one pooled connection may have been caught closing
        self.assertEqual((r.kind, r.status), ("complete", 200),
                         f"after {what}: the origin turned good is not served: {r!r}; {o.summary()}")
        r = h1(lb.port, "/good/after")
        self.assertEqual((r.kind, r.status), ("complete", 200), f"after {what}: the good backend: {r!r}")
        self.alive(lb)

    def assertFailed(self, r: Outcome, what: str, statuses=(502,), o: RawOrigin | None = None,
                     within: float = 8.0):
        detail = f"; {o.summary()}" if o else ""
        self.assertEqual((r.kind, r.status in statuses), ("complete", True),
                         f"{what}: expected {statuses} from weir, got {r!r}{detail}")
        self.assertLess(r.elapsed, within, f"{what}: too slow: {r!r}{detail}")

    def assertNotWhole(self, r: Outcome, what: str, o: RawOrigin | None = None):
        """Failed, or cut: never a complete-looking 2xx."""
        detail = f"; {o.summary()}" if o else ""
        self.assertNotEqual(r.kind, "timeout", f"{what}: the client hung: {r!r}{detail}")
        if r.kind == "complete":
            self.assertGreaterEqual(r.status, 500, f"{what}: a complete-looking answer: {r!r}{detail}")


class HeaderBlockTest(HostileCase):
    def test_header_block_over_64k(self):
        """1: 200 fields of 500 bytes (~106 KB), one 100 KB value, 11 fields of 6 KB, all over
        CONTINUATIONs; and 500 tiny fields (under 64 KiB, over weir's field count) → 502."""
        def many(conn, sid, fields, end):
            extra = [(f"x-big-{i}", "v" * 500) for i in range(200)]
            conn.respond(sid, head("200", 2, extra), b"ok")

        def huge(conn, sid, fields, end):
            conn.respond(sid, head("200", 2, [("x-huge", "h" * 100_000)]), b"ok")

        def just_over(conn, sid, fields, end):  # 66 KB in fields of 6 KB: each one acceptable
            conn.respond(sid, head("200", 2, [(f"x-f{i}", "f" * 6000) for i in range(11)]), b"ok")

        def numerous(conn, sid, fields, end):  # 500 tiny fields (~20 KB): more fields than weir keeps
            conn.respond(sid, head("200", 2, [(f"x-s{i}", "v") for i in range(500)]), b"ok")

        o = self.origin(respond=many)
        lb = self.lb(o)
        for name, fn in (("many fields", many), ("one huge value", huge), ("11 fields of 6 KB", just_over),
                         ("500 tiny fields", numerous)):
            with self.subTest(block=name):
                o.set(fn)
                r = h1(lb.port, f"/big-head/{name.replace(' ', '-')}")
                self.assertFailed(r, f"a {name} response header block over 64 KiB", o=o)
                self.alive(lb)
        print(f"\nheader blocks over 64 KiB: {o.summary()}")
        self.still_serving(lb, o, "header blocks over 64 KiB")

    def test_endless_continuation(self):
        """2: HEADERS without END_HEADERS then CONTINUATIONs until weir cuts (or 32 MiB / 8 s)."""
        results = {}

        def flood(kind):
            def respond(conn, sid, fields, end):
                conn.send(headers_frames(sid, block(head("200")), end_headers=False))
                one = frame(CONTINUATION, 0, sid, hpack_literal("x-c", "c" * 1000) if kind == "fields" else b"")
                batch = one * 64
                sent, t0, outcome = 0, time.monotonic(), "budget"
                try:
                    while sent < 32 * MB:
                        if time.monotonic() - t0 > 8:
                            outcome = "time"
                            break
                        conn.send(batch, timeout=3)
                        sent += len(batch)
                except socket.timeout:
                    outcome = "weir stopped reading"
                except Closed:
                    outcome = "weir closed"
                results[kind] = (outcome, sent, round(time.monotonic() - t0, 2))
                return "close"
            return respond

        o = self.origin(respond=flood("fields"))
        lb = self.lb(o)
        h1(lb.port, "/good/warm")
        for kind in ("fields", "empty"):
            with self.subTest(continuation=kind):
                o.set(flood(kind))
                peak = PeakRss(lb.pid)
                r = h1(lb.port, f"/continuation/{kind}", timeout=20)
                wait_until(lambda: kind in results, 15, 0.1, "the CONTINUATION flood to end")
                print(f"\nendless CONTINUATION ({kind}): client {r!r}, flood {results[kind]}")
                self.assertFailed(r, f"endless CONTINUATION frames ({kind})", (502, 504), o,
                                  within=RESPONSE_TIMEOUT + 10)
                peak.check(self, RSS_BOUND, f"endless CONTINUATION frames ({kind})")
                self.alive(lb)
        self.still_serving(lb, o, "endless CONTINUATION frames")


class FlowControlTest(HostileCase):
    def test_data_beyond_window(self):
        """3: the server ignores weir's stream window (SETTINGS_INITIAL_WINDOW_SIZE: one block)
        and sends its whole body at once. With a client that does not read (32 MiB): weir must
        refuse the excess (RST_STREAM or GOAWAY), the client's answer is cut, RSS bounded. With a
        fast client (1 MiB): weir re-credits the window as the client takes the bytes, so the
        excess is not always detectable; either a failure or the exact body, never a hang, RSS
        bounded."""
        def overflow(size):
            def respond(conn, sid, fields, end):
                body = b"w" * size
                try:
                    conn.send(headers_frames(sid, block(head("200", size))) + data_frames(sid, body, True), timeout=5)
                    conn.o.note("overflow", f"{size} sent")
                except socket.timeout:
                    conn.o.note("overflow", "weir stopped reading")
            return respond

        o = self.origin(respond=overflow(32 * MB))
        lb = self.lb(o)
        h1(lb.port, "/good/warm")
        # A client that does not read for 3 s.
        peak = PeakRss(lb.pid)
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(raw.close)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        raw.settimeout(15)
        raw.connect((HOST, lb.port))
        c = HttpConn.__new__(HttpConn)
        c.sock, c.buf, c.eof = raw, bytearray(), False
        c.send(build_request("GET", "/overflow/slow"))
        time.sleep(3)
        r = read_outcome(c, "GET", time.monotonic())
        c.close()
        print(f"\nDATA beyond the window, a client not reading: client {r!r}; {o.summary()}")
        self.assertEqual((r.kind, r.status), ("cut", 200),
                         f"32 MiB beyond the window and a client not reading: the answer was not cut: {r!r}; "
                         f"{o.summary()}")
        self.assertLess(r.body_len, 32 * MB, f"{r!r}")
        self.assertTrue([x for x in o.notes.get("goaway", []) + o.notes.get("rst", []) if x != "NO_ERROR"],
                        f"weir neither reset the stream nor sent GOAWAY with an error: {o.summary()}")
        peak.check(self, RSS_BOUND, "32 MiB of DATA beyond the stream window, a client not reading")
        self.alive(lb)
        # A fast client, 1 MiB.
        o.set(overflow(MB))
        peak = PeakRss(lb.pid)
        r = h1(lb.port, "/overflow/fast")
        print(f"DATA beyond the window, a fast client: client {r!r}; {o.summary()}")
        self.assertNotEqual(r.kind, "timeout", f"{r!r}")
        if r.kind == "complete":
            self.assertIn((r.status, r.body_len), ((200, MB), (502, r.body_len)), f"{r!r}")
        peak.check(self, RSS_BOUND, "1 MiB of DATA beyond the stream window")
        self.still_serving(lb, o, "DATA beyond the window")


class ContentLengthTest(HostileCase):
    def test_content_length_mismatch(self):
        """4: content-length 100 with 50 bytes, then 50 with 100 bytes (one DATA frame)."""
        def short(conn, sid, fields, end):
            conn.send(headers_frames(sid, block(head("200", 100))) + data_frames(sid, b"s" * 50, True))

        def long(conn, sid, fields, end):
            conn.send(headers_frames(sid, block(head("200", 50))) + data_frames(sid, b"l" * 100, True))

        o = self.origin(respond=short)
        lb = self.lb(o, workers=2)
        for name, fn in (("50 of 100", short), ("100 for 50", long)):
            with self.subTest(case=name, client="http/1.1"):
                o.set(fn)
                r = h1(lb.port, f"/cl/{name.replace(' ', '-')}")
                print(f"\ncontent-length {name}, HTTP/1.1 client: {r!r}")
                self.assertNotWhole(r, f"content-length {name} (HTTP/1.1 client)", o)
                if r.kind == "cut":
                    self.assertIsNotNone(r.declared, f"{r!r}")
                    self.assertLess(r.body_len, r.declared, f"{r!r}")
            with self.subTest(case=name, client="h2"):
                c = H2Conn(lb.port, timeout=IO)
                self.addCleanup(c.close)
                sid = c.request(f"/cl-h2/{name.replace(' ', '-')}")
                s = c.response(sid, timeout=10)
                print(f"content-length {name}, HTTP/2 client: {s!r} headers {s.headers}")
                if s.status is not None and s.status < 300:
                    self.assertIsNotNone(s.reset, f"content-length {name}: the HTTP/2 client's stream ended "
                                                  f"cleanly (no RST_STREAM): {s!r}; {c.describe()}")
                    self.assertFalse(s.ended, f"{s!r}")
                else:
                    self.assertEqual(s.status, 502, f"{s!r}")
                c.close()
                self.alive(lb)
        self.still_serving(lb, o, "content-length mismatches")


class StallTest(HostileCase):
    def test_never_answers_and_stalls_mid_body(self):
        """5: no answer at all → 504 after the response timeout; head + 100 of 1000 bytes then
        nothing → the response is cut after the timeout."""
        def silent(conn, sid, fields, end):
            pass  # the stream stays open; the next request on the connection is ignored too

        def stall(conn, sid, fields, end):
            conn.send(headers_frames(sid, block(head("200", 1000))) + data_frames(sid, b"p" * 100))

        o = self.origin(respond=silent)
        lb = self.lb(o)
        r = h1(lb.port, "/silent", timeout=20)
        print(f"\nsilent server: {r!r}")
        self.assertFailed(r, "a server that never answers", (504,), o, within=RESPONSE_TIMEOUT + 5)
        self.assertGreater(r.elapsed, RESPONSE_TIMEOUT - 0.5, f"504 before the response timeout: {r!r}")
        o.set(stall)
        r = h1(lb.port, "/stall", timeout=20)
        print(f"stalled body: {r!r}")
        self.assertEqual(r.kind, "cut", f"a body stalled mid-way: the client's response was not cut: {r!r}; "
                                        f"{o.summary()}")
        self.assertEqual((r.status, r.body_len), (200, 100), f"{r!r}")
        self.assertGreater(r.elapsed, RESPONSE_TIMEOUT - 0.5, f"cut before the timeout: {r!r}")
        self.assertLess(r.elapsed, RESPONSE_TIMEOUT + 5, f"cut long after the timeout: {r!r}")
        # An HTTP/2 client: the stream is reset.
        c = H2Conn(lb.port, timeout=IO)
        self.addCleanup(c.close)
        s = c.response(c.request("/stall-h2"), timeout=RESPONSE_TIMEOUT + 8)
        self.assertEqual((s.status, s.ended), (200, False), f"{s!r}")
        self.assertIsNotNone(s.reset, f"{s!r}")
        c.close()
        self.still_serving(lb, o, "silent and stalling servers")


class FloodTest(HostileCase):
    def test_ping_and_settings_floods(self):
        """6: thousands of PINGs / SETTINGS (each wants an ACK) before the answer, with the origin
        reading weir's ACKs, and without reading them."""
        report = {}

        def flooder(kind: str, reading: bool, frames: int):
            def respond(conn, sid, fields, end):
                if kind == "ping":
                    batch = ping_frame(b"hostile!") * 500
                else:
                    batch = (settings_frame({S_HEADER_TABLE_SIZE: 4096, S_INITIAL_WINDOW_SIZE: 65535}) * 250 +
                             settings_frame({S_HEADER_TABLE_SIZE: 4096, S_INITIAL_WINDOW_SIZE: 65536}) * 250)
                sent, outcome, t0 = 0, "all sent", time.monotonic()
                conn.auto_ack = False
                try:
                    while sent < frames:
                        conn.send(batch, timeout=3)
                        sent += 500
                        if reading:
                            conn.drain()
                except socket.timeout:
                    outcome = "weir stopped reading"
                except Closed:
                    outcome = "weir closed"
                report[(kind, reading)] = (outcome, sent, round(time.monotonic() - t0, 2))
                if outcome != "all sent":
                    return "close"
                conn.auto_ack = True
                good_respond(conn, sid, fields, end)
            return respond

        o = self.origin(rcvbuf=4096)  # not reading: weir's ACKs back up at once
        lb = self.lb(o)
        h1(lb.port, "/good/warm")
        h1(lb.port, "/warm")
        for kind in ("ping", "settings"):
            for reading in (True, False):
                with self.subTest(flood=kind, reading=reading):
                    o.set(flooder(kind, reading, 20_000 if reading else 1_000_000))
                    time.sleep(0.2)
                    peak = PeakRss(lb.pid)
                    cpu0 = cpu_seconds(lb.pid)
                    t0 = time.monotonic()
                    r = h1(lb.port, f"/flood/{kind}/{reading}", timeout=30)
                    wall = time.monotonic() - t0
                    cpu = cpu_seconds(lb.pid) - cpu0
                    # Quiet now: weir must not keep spinning on what the flood left.
                    q0 = cpu_seconds(lb.pid)
                    time.sleep(1.5)
                    quiet = cpu_seconds(lb.pid) - q0
                    print(f"\n{kind} flood ({'reading' if reading else 'not reading'} the ACKs): client {r!r}, "
                          f"flood {report.get((kind, reading))}, weir CPU {cpu:.2f}s over {wall:.2f}s, "
                          f"{quiet:.2f}s in the 1.5 s after")
                    self.assertNotEqual(r.kind, "timeout", f"{r!r}")
                    self.assertTrue((r.kind, r.status) in (("complete", 200), ("complete", 502)),
                                    f"a {kind} flood: {r!r}; {o.summary()}")
                    self.assertLess(quiet, 0.5, f"weir busy after a {kind} flood had ended: {quiet:.2f}s CPU in 1.5 s")
                    self.assertLess(cpu, 8.0, f"weir spent {cpu:.1f}s CPU on a {kind} flood of "
                                              f"{report.get((kind, reading))}")
                    peak.check(self, RSS_BOUND, f"a {kind} flood ({'reading' if reading else 'not reading'})")
                    self.alive(lb)
        self.still_serving(lb, o, "PING and SETTINGS floods")


class StreamStateTest(HostileCase):
    def test_frames_on_unopened_streams_and_push_promise(self):
        """7: HEADERS on an even stream, DATA / WINDOW_UPDATE / RST_STREAM on idle odd streams,
        PUSH_PROMISE (push is disabled), each before any answer: a connection error. With one
        server (retries go to another server only): 502 at once. In backend `pair` (that server
        and a good one, retries: 1): the GET is retried on the good one, 200."""
        def bad(kind: str):
            def respond(conn, sid, fields, end):
                if kind == "headers-even":
                    out = headers_frames(sid + 1, block(head("200", 0)), end_stream=True)
                elif kind == "data-idle":
                    out = data_frames(sid + 100, b"x" * 10, end_stream=True)
                elif kind == "window-update-idle":
                    out = frame(WINDOW_UPDATE, 0, sid + 100, struct.pack(">I", 1000))
                elif kind == "rst-idle":
                    out = frame(RST_STREAM, 0, sid + 100, struct.pack(">I", 8))
                else:  # push-promise
                    promise = struct.pack(">I", sid + 1) + block([(":method", "GET"), (":scheme", "http"),
                                                                  (":authority", "x"), (":path", "/pushed")])
                    out = frame(PUSH_PROMISE, END_HEADERS, sid, promise)
                conn.o.count("bad")
                conn.send(out)
                conn.hold(10)
            return respond

        o = self.origin()
        fine = self.origin("fine")
        lb = self.lb(o, pair=[o, fine])
        kinds = ("headers-even", "data-idle", "window-update-idle", "rst-idle", "push-promise")
        for kind in kinds:
            o.set(bad(kind))
            with self.subTest(frame=kind, backend="one server"):
                c0 = o.conns
                r = h1(lb.port, f"/{kind}")
                print(f"\n{kind}: client {r!r}, {o.conns - c0} connections; {o.summary()}")
                self.assertFailed(r, f"{kind} before the answer", (502,), o, within=5)
                self.alive(lb)
            with self.subTest(frame=kind, backend="pair"):
                for i in range(2):  # round robin: one of the two meets the bad server first
                    r = h1(lb.port, f"/pair/{kind}/{i}")
                    self.assertEqual((r.kind, r.status), ("complete", 200),
                                     f"{kind} on one of two servers: the GET was not retried on the other: {r!r}; "
                                     f"{o.summary()}; {fine.summary()}")
                self.alive(lb)
        print(f"bad frames sent {o.get('bad')}; {o.summary()}; {fine.summary()}")
        gone = [x for x in o.notes.get("goaway", []) if x != "NO_ERROR"]
        self.assertTrue(gone, f"weir never answered a protocol violation with GOAWAY: {o.summary()}")
        self.still_serving(lb, o, "frames on unopened streams")


class InterimTest(HostileCase):
    def test_interim_head_split_over_continuation(self):
        """8b: a 103 whose field block goes on in a CONTINUATION frame sent 0.5 s later, while
        the client's POST body arrives in two parts (the second one wakes the exchange between
        the two frames). The exchange must not take the interim head before its block ended.
        (Found here: weir takes and pops it at once, then the CONTINUATION's field is added to
        interim_.back() of an empty vector: heap-buffer-overflow in H2Channel::add_field.)"""
        def respond(conn, sid, fields, end):
            conn.send(frame(HEADERS, 0, sid, block([(":status", "103")])))
            time.sleep(0.5)
            conn.send(frame(CONTINUATION, END_HEADERS, sid, block([("link", "</a.css>; rel=preload")])) +
                      headers_frames(sid, block(head("200", 2))) + data_frames(sid, b"ok", True))

        o = self.origin(respond=respond)
        lb = self.lb(o)
        with HttpConn(lb.port, timeout=IO) as c:
            t0 = time.monotonic()
            c.send(build_request("POST", "/split-103", [("Content-Length", "10")], None)[:-2] + b"\r\n12345")
            time.sleep(0.25)
            c.send(b"67890")
            r = read_outcome(c, "POST", t0)
        time.sleep(0.3)
        self.alive(lb)
        self.assertEqual((r.kind, r.status), ("complete", 200), f"{r!r}; {o.summary()}")
        self.still_serving(lb, o, "a 103 split over CONTINUATION")

    def test_interim_flood_and_trickle(self):
        """8c: 10,000 distinct 103 heads of ~11 KB to clients that do not read (HTTP/2 and
        HTTP/1.1): RSS bounded. A 103 every 0.4 s and never a final head: 504 after the response
        timeout (which runs until the response head), not after the trickle ends (8 s)."""
        done = {}

        def flood(conn, sid, fields, end):
            n = 0
            try:
                while n < 10_000:
                    heads = []
                    for j in range(n, n + 10):
                        links = [("link", f"</{j}/{i}/{'l' * 200}>; rel=preload") for i in range(50)]
                        heads.append(headers_frames(sid, block([(":status", "103")] + links)))
                    conn.send(b"".join(heads), timeout=3)
                    n += 10
                done["flood"] = ("all sent", n)
            except socket.timeout:
                done["flood"] = ("weir stopped reading", n)
            except Closed:
                done["flood"] = ("weir closed", n)
            return "close"

        def trickle(conn, sid, fields, end):
            t0 = time.monotonic()
            while time.monotonic() - t0 < 8:
                conn.send(headers_frames(sid, block([(":status", "103"), ("link", "</x>; rel=preload")])))
                conn.frame(0.4)
            done["trickle"] = True
            return "close"

        o = self.origin(respond=flood)
        lb = self.lb(o)
        h1(lb.port, "/good/warm")
        for client in ("h2", "http/1.1"):
            with self.subTest(client=client):
                done.clear()
                o.set(flood)
                peak = PeakRss(lb.pid)
                raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.addCleanup(raw.close)
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
                raw.settimeout(IO)
                raw.connect((HOST, lb.port))
                if client == "h2":
                    raw.sendall(PREFACE + settings_frame({}) + frame(HEADERS, END_STREAM | END_HEADERS, 1, block(
                        [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/interim-flood")])))
                else:
                    raw.sendall(build_request("GET", "/interim-flood"))
                wait_until(lambda: "flood" in done, 30, 0.1, "the 103 flood to end")
                time.sleep(0.5)
                print(f"\n103 flood to a {client} client not reading: {done['flood']}, "
                      f"weir RSS high-water +{peak.growth() / MB:.1f} MiB")
                raw.close()
                peak.check(self, RSS_BOUND, f"10,000 103 heads to a {client} client that does not read")
                self.alive(lb)
        o.set(trickle)
        r = h1(lb.port, "/interim-trickle", timeout=20)
        print(f"103 every 0.4 s, no final head: {r!r}")
        self.assertFailed(r, "103 heads trickling, never a final head", (504,), o, within=RESPONSE_TIMEOUT + 3)
        self.still_serving(lb, o, "103 floods and trickles")


class SettingsTest(HostileCase):
    def test_zero_streams_and_refused_streams(self):
        """8d: SETTINGS_MAX_CONCURRENT_STREAMS=0 sent after the first request (answered), while a
        second request waits on the same connection for the server's SETTINGS: it must end
        (moved to another connection, or 502/503/504) within the timeouts, not wait forever in
        the session. RST_STREAM(REFUSED_STREAM) for every stream of a lone server: 502 after a
        bounded number of tries, no busy loop."""
        def zero(conn):
            sid, fields, end = conn.request(timeout=IO)
            time.sleep(0.6)  # the second request joins this connection meanwhile
            conn.start({3: 0})  # SETTINGS_MAX_CONCURRENT_STREAMS
            good_respond(conn, sid, fields, end)

        def refuse(conn, sid, fields, end):
            conn.o.count("refused")
            conn.send(frame(RST_STREAM, 0, sid, struct.pack(">I", 7)))

        o = self.origin(on_connect=zero)
        lb = self.lb(o)
        h1(lb.port, "/good/warm")
        c0 = o.conns
        outs = {}

        def first():
            outs["first"] = h1(lb.port, "/zero-streams/first", timeout=20)

        t = threading.Thread(target=first, daemon=True)
        t.start()
        time.sleep(0.25)
        r = h1(lb.port, "/zero-streams/second", timeout=20)
        t.join(25)
        print(f"\nMAX_CONCURRENT_STREAMS=0: first {outs.get('first')!r}, second {r!r}, {o.conns - c0} connections; "
              f"{o.summary()}")
        self.assertEqual((outs["first"].kind, outs["first"].status), ("complete", 200), f"{outs['first']!r}")
        self.assertNotEqual(r.kind, "timeout", f"a request waiting on a connection whose server allows 0 streams "
                                               f"hung: {r!r}; {o.summary()}")
        self.assertTrue(r.kind == "complete" and r.status in (200, 502, 503, 504), f"{r!r}")
        self.assertLess(r.elapsed, RESPONSE_TIMEOUT + 4, f"{r!r}")
        self.alive(lb)
        o.set(refuse)
        cpu0, t0 = cpu_seconds(lb.pid), time.monotonic()
        outs = [h1(lb.port, f"/refused/{i}") for i in range(5)]
        cpu, wall = cpu_seconds(lb.pid) - cpu0, time.monotonic() - t0
        print(f"REFUSED_STREAM always: {outs}, {o.get('refused')} streams refused, CPU {cpu:.2f}s over {wall:.2f}s")
        for r in outs:
            self.assertFailed(r, "REFUSED_STREAM for every stream", (502, 503), o, within=5)
        self.assertLessEqual(o.get("refused"), 5 * 10, f"too many tries: {o.summary()}")
        self.assertLess(cpu, max(2.0, wall * 0.5), f"weir CPU {cpu:.2f}s over {wall:.2f}s")
        self.still_serving(lb, o, "zero streams and refused streams")

    def test_no_settings_ever(self):
        """8e: a server that sends nothing at all, not even its SETTINGS: the first request (sent
        before the server's SETTINGS, as allowed) and a second one that joined the connection
        and waits for those SETTINGS both end with 504 within the response timeout."""
        def mute(conn):
            conn.o.note("mute", conn.n)

        def silent(conn, sid, fields, end):
            pass

        o = self.origin(respond=silent, on_connect=mute)
        lb = self.lb(o)
        h1(lb.port, "/good/warm")
        outs = {}

        def first():
            outs["first"] = h1(lb.port, "/mute/first", timeout=20)

        t = threading.Thread(target=first, daemon=True)
        t.start()
        time.sleep(0.3)
        r = h1(lb.port, "/mute/second", timeout=20)
        t.join(25)
        print(f"\nno SETTINGS ever: first {outs.get('first')!r}, second {r!r}; {o.summary()}")
        for name, x in (("first", outs["first"]), ("second", r)):
            self.assertFailed(x, f"a server that never sends SETTINGS ({name} request)", (502, 504), o,
                              within=RESPONSE_TIMEOUT + 4)
        self.still_serving(lb, o, "a server that never sends SETTINGS")


class StatusTest(HostileCase):
    def test_invalid_status(self):
        """8: :status abc, 99, missing, 1000, 20x, 101, doubled, empty → 502."""
        def status(fields_status):
            def respond(conn, sid, fields, end):
                hs = [(":status", v) for v in fields_status] + [("content-length", "2")]
                conn.respond(sid, hs, b"ok")
            return respond

        o = self.origin()
        lb = self.lb(o)
        for st in (["abc"], ["99"], [], ["1000"], ["20x"], ["101"], ["200", "200"], [""], ["-20"], [" 200"]):
            with self.subTest(status=st):
                o.set(status(st))
                r = h1(lb.port, "/status")
                self.assertFailed(r, f":status {st}", (502,), o, within=5)
        # HTTP/2 client too, one case.
        o.set(status(["abc"]))
        c = H2Conn(lb.port, timeout=IO)
        self.addCleanup(c.close)
        s = c.response(c.request("/status-h2"), timeout=10)
        self.assertEqual(s.status, 502, f"{s!r}")
        c.close()
        self.still_serving(lb, o, "invalid :status")


class GoawayTest(HostileCase):
    def test_goaway_zero_every_connection(self):
        """9: SETTINGS + GOAWAY(last_stream_id=0) at once on every connection (then held open, or
        closed) → 502/503 in bounds, a bounded number of connections, no busy loop."""
        def goaway(close: bool):
            def on_connect(conn):
                conn.start()
                conn.send(goaway_frame(0, 0, b"go away"))
                if close:
                    conn.drain()
                    raise Closed("closed after GOAWAY")
                conn.hold(10)
            return on_connect

        o = self.origin()
        lb = self.lb(o, retries=2)
        h1(lb.port, "/good/warm")
        for close in (False, True):
            with self.subTest(then="close" if close else "hold"):
                o.set(good_respond, goaway(close))
                time.sleep(0.2)
                c0, cpu0, t0 = o.conns, cpu_seconds(lb.pid), time.monotonic()
                outs = [h1(lb.port, f"/goaway/{close}/{i}") for i in range(5)]
                wall, cpu, conns = time.monotonic() - t0, cpu_seconds(lb.pid) - cpu0, o.conns - c0
                print(f"\nGOAWAY(0) then {'close' if close else 'hold'}: {outs}, {conns} connections, "
                      f"weir CPU {cpu:.2f}s over {wall:.2f}s")
                for r in outs:
                    self.assertFailed(r, "GOAWAY(0) on every connection", (502, 503), o, within=5)
                self.assertLessEqual(conns, 5 * 20, f"{conns} connections for 5 requests: {o.summary()}")
                self.assertLess(cpu, max(2.0, wall * 0.5), f"weir CPU {cpu:.2f}s over {wall:.2f}s: a busy loop")
                q0 = cpu_seconds(lb.pid)
                time.sleep(1.0)
                self.assertLess(cpu_seconds(lb.pid) - q0, 0.4, "weir busy after the GOAWAY requests ended")
                self.alive(lb)
        self.still_serving(lb, o, "GOAWAY(0) on every connection")


class MidResponseCloseTest(HostileCase):
    def test_close_mid_response_200_times(self):
        """10: head (content-length 10000) + 3000 bytes, then the TCP connection closed, for every
        request: 200 of them (4 at a time), each cut; weir's RSS and fds come back."""
        def cut(conn, sid, fields, end):
            conn.send(headers_frames(sid, block(head("200", 10000))) + data_frames(sid, b"c" * 3000))
            return "close"

        o = self.origin(respond=cut)
        lb = self.lb(o, workers=2)
        for i in range(8):  # warm up both workers' pools
            h1(lb.port, f"/warm{i}")
            h1(lb.port, f"/good/warm{i}")
        time.sleep(0.3)
        fds0 = fd_count(lb.pid)
        peak = PeakRss(lb.pid)
        outs: list[Outcome] = []
        lock = threading.Lock()

        def client(k):
            for i in range(50):
                r = h1(lb.port, f"/cut/{k}/{i}", timeout=15)
                with lock:
                    outs.append(r)

        ts = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join(90)
        self.assertFalse(any(t.is_alive() for t in ts), "clients still running after 90 s")
        kinds = {}
        for r in outs:
            kinds[(r.kind, r.status)] = kinds.get((r.kind, r.status), 0) + 1
        print(f"\nclose mid-response: {len(outs)} requests in {time.monotonic() - t0:.1f}s: {kinds}; "
              f"RSS now {rss(lb.pid) / MB:.1f} MiB; {o.summary()}")
        self.assertEqual(len(outs), 200)
        whole = [r for r in outs if r.kind == "complete" and r.status < 500]
        self.assertEqual(whole, [], "complete-looking answers from a server that closed mid-body")
        hung = [r for r in outs if r.kind == "timeout"]
        self.assertEqual(hung, [], "clients hung")
        # The answer in progress is cut; other requests on the same connection (4 clients, 2
        # workers: streams share connections) were never answered: 502 (retries: 0).
        odd = [r for r in outs if not ((r.kind == "cut" and r.status == 200 and r.body_len < 10000)
                                       or (r.kind == "complete" and r.status == 502))]
        self.assertEqual(odd, [], f"neither a cut 200 nor a 502: {kinds}")
        self.assertGreater(kinds.get(("cut", 200), 0), 50, f"too few cut answers: {kinds}")
        peak.check(self, RSS_BOUND, "200 responses cut by the server closing")
        try:
            wait_until(lambda: fd_count(lb.pid) <= fds0 + 8, 10, 0.2, "weir's fds to come back")
        except AssertionError:
            self.fail(f"weir holds {fd_count(lb.pid)} fds, {fds0} before 200 cut responses: a leak")
        self.still_serving(lb, o, "200 mid-response closes")


class SlowReaderTest(HostileCase):
    def test_zero_window_server_10mib_upload(self):
        """11: SETTINGS_INITIAL_WINDOW_SIZE=0, never a WINDOW_UPDATE, and the socket never read
        after the request head; the client uploads 10 MiB: weir does not buffer it, the request
        ends (504)."""
        def on_connect(conn):
            conn.start({S_INITIAL_WINDOW_SIZE: 0})

        def respond(conn, sid, fields, end):
            conn.o.note("upload-head", fields.get("content-length"))
            conn.sleep(30)

        o = self.origin(respond=respond, on_connect=on_connect)
        lb = self.lb(o)
        h1(lb.port, "/good/warm")
        peak = PeakRss(lb.pid)
        n = 10 * MB
        s = socket.create_connection((HOST, lb.port), timeout=IO)
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        s.sendall(build_request("POST", "/upload", [("Content-Type", "application/octet-stream")], None) [:-2]
                  + f"Content-Length: {n}\r\n\r\n".encode())
        chunk = b"u" * 65536
        sent, answer, t0 = 0, b"", time.monotonic()
        sent_at_answer = stalled_at = None
        s.setblocking(False)
        while time.monotonic() - t0 < 20:
            r, w, _ = select.select([s], [s] if sent < n else [], [], 0.2)
            if r:
                try:
                    d = s.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    d = b""
                if d and sent_at_answer is None:
                    sent_at_answer = sent
                answer += d
                if not d or (b"\r\n\r\n" in answer and answer.endswith(b"\n")):
                    break
            elif w:
                try:
                    sent += s.send(chunk[:min(len(chunk), n - sent)])
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    n = sent  # weir closed: nothing more to send
            elif sent < n and stalled_at is None and time.monotonic() - t0 > 0.5:
                stalled_at = sent
        elapsed = time.monotonic() - t0
        growth = peak.growth()
        print(f"\nzero-window server, 10 MiB upload: client stalled at {(stalled_at or 0) / MB:.2f} MiB, "
              f"{(sent_at_answer or 0) / MB:.2f} MiB sent when the answer came ({sent / MB:.2f} in all), "
              f"answer {answer[:40]!r} after {elapsed:.1f}s, weir RSS high-water +{growth / MB:.1f} MiB; "
              f"{o.summary()}")
        self.assertTrue(answer.startswith(b"HTTP/1.1 5") or answer == b"",
                        f"an answer other than 5xx: {answer[:200]!r}")
        self.assertLess(elapsed, 15, "the upload to a server that never reads did not end")
        self.assertIsNotNone(stalled_at, "the client's upload never stalled: weir takes it all")
        self.assertLess(sent_at_answer if sent_at_answer is not None else sent, 10 * MB,
                        "weir took the whole 10 MiB upload for a server that takes nothing")
        self.assertLess(growth, 8 * MB, f"weir's RSS grew by {growth / MB:.1f} MiB for an upload the server "
                                        "does not take: weir buffers it")
        if answer:
            self.assertIn(b" 504 ", answer.split(b"\r\n")[0], answer[:200])
        s.close()
        self.still_serving(lb, o, "a zero-window server and a 10 MiB upload")


if __name__ == "__main__":
    unittest.main()
