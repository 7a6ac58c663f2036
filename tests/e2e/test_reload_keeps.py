"""SIGHUP never closes an open connection (ops.md): WebSocket and tcp tunnels and in-flight
requests go on with the configuration they started with, through reloads that change the very
servers they use and through a reload refused for a broken config; new connections take the new
configuration.

The backends are small Python servers that say who they are: a WebSocket echo that prefixes
every echoed message with its name ("a:hello"), a tcp echo that greets with its name, so the test
sees which server an old tunnel still reaches after its server left the config. Cases:
- an HTTP/1.1 WebSocket, a `mode: tcp` tunnel and an idle keep-alive connection through four
  reloads (weights, server list, a broken config, routes): each still works after each reload,
  the tunnels on their original servers while new connections go where the new config says, and
  the tunnels close cleanly at the end;
- a WebSocket over HTTP/2 (RFC 8441) with a slow request in flight on the same connection: the
  reload sends the connection a GOAWAY, the open stream and the request go on;
- a slow download (16 MiB read slowly) through two reloads arrives complete.
Each reload's log line says it was applied (or refused, for the broken config).
"""

import base64
import hashlib
import os
import socket
import struct
import time
import unittest

import hpack

from test_websocket import GUID, read_frame, ws_frame
from weirtest import (HOST, HttpConn, WeirTestCase, build_request, free_port, read_request_head,
                      wait_until)

BROKEN = "workers: 2\nlisteners: [\nthis is: not valid yaml\n"


# ----------------------------------------------------------------------------------------------
# Backends that name themselves


def _recv_exact(c: socket.socket, buf: bytearray, n: int) -> bool:
    while len(buf) < n:
        chunk = c.recv(65536)
        if not chunk:
            return False
        buf += chunk
    return True


def tagged_http(name: str, handshakes: list):
    """A ScriptedServer handler: a WebSocket echo that answers every message with name + ":" +
    message (and a close frame with a close frame, then closes); plain requests get a whoami-like
    "Name: NAME" answer on a keep-alive connection. The fields of each Upgrade request are
    appended to handshakes."""
    tag = name.encode() + b":"

    def handler(c: socket.socket):
        c.settimeout(120)
        buf = bytearray()
        while True:
            head = read_request_head(c)
            if not head:
                return
            text = head.decode("latin-1")
            _, _, rest = text.partition("\r\n\r\n")
            buf = bytearray(rest.encode("latin-1"))
            fields = {}
            for line in text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            if fields.get("upgrade", "").lower() != "websocket":
                body = f"Name: {name}\n".encode()
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                          + str(len(body)).encode() + b"\r\n\r\n" + body)
                continue
            handshakes.append(fields)
            # RFC 6455 4.2.1 requires a key; like whoami, this server answers without one, and
            # the tests check the handshakes they made afterwards.
            key = fields.get("sec-websocket-key", "")
            accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest())
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            break
        while True:  # frames
            if not _recv_exact(c, buf, 2):
                return
            b0, b1 = buf[0], buf[1]
            n, pos = b1 & 0x7F, 2
            if n == 126:
                if not _recv_exact(c, buf, 4):
                    return
                n, pos = struct.unpack("!H", bytes(buf[2:4]))[0], 4
            elif n == 127:
                if not _recv_exact(c, buf, 10):
                    return
                n, pos = struct.unpack("!Q", bytes(buf[2:10]))[0], 10
            mask = b""
            if b1 & 0x80:
                if not _recv_exact(c, buf, pos + 4):
                    return
                mask, pos = bytes(buf[pos:pos + 4]), pos + 4
            if not _recv_exact(c, buf, pos + n):
                return
            payload = bytes(buf[pos:pos + n])
            del buf[:pos + n]
            if mask:
                payload = bytes(x ^ mask[i % 4] for i, x in enumerate(payload))
            op = b0 & 0x0F
            if op == 8:  # close: answer it, then close the connection (RFC 6455 5.5.1)
                c.sendall(bytes([0x88, len(payload)]) + payload)
                c.shutdown(socket.SHUT_WR)
                return
            out = payload if op in (9, 10) else tag + payload
            c.sendall(_server_frame(out, 0x0A if op == 9 else b0 & 0x8F))

    return handler


def _server_frame(payload: bytes, b0: int) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes([b0, n]) + payload
    if n < 65536:
        return bytes([b0, 126]) + struct.pack("!H", n) + payload
    return bytes([b0, 127]) + struct.pack("!Q", n) + payload


def tagged_tcp(name: str):
    """A ScriptedServer handler: greets with NAME + newline, then echoes; on the client's EOF it
    closes its side too."""
    def handler(c: socket.socket):
        c.settimeout(120)
        c.sendall(name.encode() + b"\n")
        while True:
            data = c.recv(65536)
            if not data:
                break
            c.sendall(data)
        c.shutdown(socket.SHUT_WR)
    return handler


# ----------------------------------------------------------------------------------------------
# Clients


class WsClient:
    """An HTTP/1.1 WebSocket through weir (frames as test_websocket.py makes and reads them)."""

    def __init__(self, port: int):
        self.conn = HttpConn(port, timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.conn.send(build_request("GET", "/chat", headers=[
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
        r = self.conn.read_response()
        if r.status != 101:
            raise AssertionError(f"WebSocket handshake answered {r.status}: {r.raw_head!r}")

    def echo(self, msg: bytes) -> bytes:
        self.conn.send(ws_frame(msg))
        op, masked, payload = read_frame(self.conn)
        if op != 0x81 or masked:
            raise AssertionError(f"unexpected frame {op:#x} masked={masked} {payload!r}")
        return payload

    def close(self, test: unittest.TestCase):
        """A clean close: close frame both ways, then the connection ends."""
        self.conn.send(ws_frame(struct.pack("!H", 1000) + b"bye", opcode=8))
        op, _, payload = read_frame(self.conn)
        test.assertEqual(op, 0x88)
        test.assertEqual(payload, struct.pack("!H", 1000) + b"bye")
        test.assertTrue(self.conn.wait_closed(10), "the WebSocket's connection did not end after the close")
        self.conn.close()


class TcpClient:
    def __init__(self, port: int):
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.buf = b""
        self.name = self._line().decode()

    def _line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"tcp tunnel closed (had {self.buf!r})")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def echo(self, msg: bytes) -> bytes:
        self.sock.sendall(msg + b"\n")
        return self._line()

    def close(self, test: unittest.TestCase):
        """Half-close: the echo server's EOF comes back through the tunnel."""
        self.sock.shutdown(socket.SHUT_WR)
        self.sock.settimeout(10)
        rest = self.buf
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        test.assertEqual(rest, b"")
        self.sock.close()


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9


def h2_frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack("!I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack("!I", sid) + payload


class RawH2:
    """A minimal HTTP/2 client (h2c prior knowledge) on a raw socket. Unlike python-h2, which
    stops a connection at the first GOAWAY, it goes on using its open streams after one, as RFC
    9113 6.8 says. Every wait has a deadline."""

    def __init__(self, port: int):
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.enc, self.dec = hpack.Encoder(), hpack.Decoder()
        self.buf = bytearray()
        self.heads, self.data, self.ended, self.resets = {}, {}, set(), {}
        self.goaway = None  # (last stream id, error code)
        self.settings_seen = False
        self.eof = False
        self.next_sid = 1
        self._block = None  # (sid, flags, bytes) of a header block awaiting CONTINUATION
        self.sock.sendall(PREFACE + h2_frame(SETTINGS, 0, 0)
                          + h2_frame(WINDOW_UPDATE, 0, 0, struct.pack("!I", (1 << 24))))
        self.pump(lambda: self.settings_seen)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def pump(self, until, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting on the HTTP/2 connection")
            if self.eof:
                raise AssertionError("weir closed the HTTP/2 connection")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
                continue
            self.buf += chunk
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                ftype, flags = self.buf[3], self.buf[4]
                sid = struct.unpack("!I", bytes(self.buf[5:9]))[0] & 0x7FFFFFFF
                payload = bytes(self.buf[9:9 + n])
                del self.buf[:9 + n]
                self._frame(ftype, flags, sid, payload)

    def _frame(self, ftype, flags, sid, payload):
        if ftype == SETTINGS:
            if not flags & 1:
                self.settings_seen = True
                self.sock.sendall(h2_frame(SETTINGS, 1, 0))
        elif ftype == PING:
            if not flags & 1:
                self.sock.sendall(h2_frame(PING, 1, 0, payload))
        elif ftype == GOAWAY:
            last, code = struct.unpack("!II", payload[:8])
            self.goaway = (last & 0x7FFFFFFF, code)
        elif ftype == RST_STREAM:
            self.resets[sid] = struct.unpack("!I", payload)[0]
        elif ftype == HEADERS:
            if flags & 0x8:  # PADDED
                payload = payload[1:len(payload) - payload[0]]
            if flags & 0x20:  # PRIORITY
                payload = payload[5:]
            self._block = (sid, flags, payload)
            if flags & 0x4:
                self._headers_done()
        elif ftype == CONTINUATION:
            s, f, block = self._block
            self._block = (s, f | (flags & 0x4), block + payload)
            if flags & 0x4:
                self._headers_done()
        elif ftype == DATA:
            if flags & 0x8:
                payload = payload[1:len(payload) - payload[0]]
            self.data.setdefault(sid, bytearray()).extend(payload)
            if payload:
                inc = struct.pack("!I", len(payload))
                self.sock.sendall(h2_frame(WINDOW_UPDATE, 0, 0, inc) + h2_frame(WINDOW_UPDATE, 0, sid, inc))
            if flags & 1:
                self.ended.add(sid)

    def _headers_done(self):
        sid, flags, block = self._block
        self._block = None
        fields = [(k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
                  for k, v in self.dec.decode(block)]
        if sid not in self.heads:
            self.heads[sid] = fields
        if flags & 1:
            self.ended.add(sid)

    def status(self, sid) -> int:
        return int(dict(self.heads[sid])[":status"])

    def request(self, fields, end_stream: bool) -> int:
        sid = self.next_sid
        self.next_sid += 2
        self.sock.sendall(h2_frame(HEADERS, 0x4 | (1 if end_stream else 0), sid, self.enc.encode(fields)))
        return sid

    def get(self, path: str) -> int:
        return self.request([(":method", "GET"), (":scheme", "http"), (":path", path),
                             (":authority", "example.test")], True)

    def connect_ws(self) -> int:
        sid = self.request([(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                            (":path", "/chat"), (":authority", "example.test"),
                            ("sec-websocket-version", "13")], False)
        self.pump(lambda: sid in self.heads or sid in self.resets)
        if sid in self.resets or self.status(sid) != 200:
            raise AssertionError(f"extended CONNECT answered {self.heads.get(sid)} reset={self.resets.get(sid)}")
        return sid

    def send(self, sid: int, data: bytes, end: bool = False):
        self.sock.sendall(h2_frame(DATA, 1 if end else 0, sid, data))

    def ws_echo(self, sid: int, msg: bytes) -> bytes:
        self.send(sid, ws_frame(msg))
        op, payload = self.ws_read(sid)
        if op != 0x81:
            raise AssertionError(f"unexpected frame {op:#x} {payload!r}")
        return payload

    def ws_read(self, sid: int):
        """(first byte, payload) of the next WebSocket frame (< 126 bytes) on stream sid."""
        buf = self.data.setdefault(sid, bytearray())
        got = []

        def frame():
            if sid in self.resets:
                raise AssertionError(f"stream {sid} reset with {self.resets[sid]}")
            if len(buf) < 2 or len(buf) < 2 + (buf[1] & 0x7F):
                return False
            n = buf[1] & 0x7F
            got.append((buf[0], bytes(buf[2:2 + n])))
            del buf[:2 + n]
            return True
        self.pump(frame)
        return got[0]


# ----------------------------------------------------------------------------------------------


class ReloadKeepsConnectionsTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.handshakes = []
        self.ws = {n: self.start_server(tagged_http(n, self.handshakes)) for n in ("a", "b", "c")}
        self.tcp = {n: self.start_server(tagged_tcp(n)) for n in ("ta", "tb")}
        self.plain = self.start_whoami("w1")
        self.port, self.tcp_port, self.admin = free_port(), free_port(), free_port()

    def config(self, ws, tcp, *, plain_weight: int = 1, routes=None):
        """ws / tcp: [(name, weight)] of the WebSocket and tcp backends."""
        def servers(table, names):
            return [{"name": n, "address": table[n].address, "weight": w} for n, w in names]
        return {
            "workers": 2,
            "admin": {"listen": f"{HOST}:{self.admin}"},
            "listeners": [
                {"name": "web", "listen": f"{HOST}:{self.port}", "h2c": True,
                 "routes": (routes or []) + [{"match": {"path_prefix": "/slow"}, "backend": "plain"},
                                             {"backend": "ws"}]},
                {"name": "tunnel", "listen": f"{HOST}:{self.tcp_port}", "mode": "tcp", "backend": "tcp"},
            ],
            "backends": [
                {"name": "ws", "servers": servers(self.ws, ws)},
                {"name": "tcp", "servers": servers(self.tcp, tcp)},
                {"name": "plain", "servers": [{"name": "w1", "address": self.plain.address,
                                               "weight": plain_weight}]},
            ],
        }

    def reload(self, lb, cfg, applied: bool = True):
        before = lb.proc.stderr()
        self.assertEqual(lb.reload(cfg), applied, lb.proc.stderr()[len(before) - 200:][-3000:])

    def new_ws_names(self, n: int = 4) -> set:
        names = set()
        for i in range(n):
            ws = WsClient(self.port)
            names.add(ws.echo(b"x").split(b":")[0].decode())
            ws.close(self)
        return names

    def new_tcp_names(self, n: int = 4) -> set:
        names = set()
        for i in range(n):
            t = TcpClient(self.tcp_port)
            names.add(t.name)
            t.close(self)
        return names

    def test_websocket_tcp_tunnel_and_keepalive_survive_reloads(self):
        lb = self.start_weir(self.config([("a", 1)], [("ta", 1)]))
        ws = WsClient(self.port)
        self.addCleanup(ws.conn.close)
        tcp = TcpClient(self.tcp_port)
        self.addCleanup(tcp.sock.close)
        keep = HttpConn(self.port, timeout=10)
        self.addCleanup(keep.close)
        self.assertEqual(ws.echo(b"hello"), b"a:hello")
        self.assertEqual(tcp.name, "ta")
        self.assertEqual(tcp.echo(b"hello"), b"hello")
        self.assertEqual(keep.get("/").whoami_name(), "a")

        steps = [
            # (what, config, applied, where new WebSockets go, where new tunnels go)
            ("weights", self.config([("a", 3), ("b", 1)], [("ta", 2), ("tb", 1)]), True, {"a", "b"}, {"ta", "tb"}),
            ("their servers leave the config", self.config([("b", 1)], [("tb", 1)]), True, {"b"}, {"tb"}),
            ("a broken config", BROKEN, False, {"b"}, {"tb"}),
            ("routes and servers", self.config([("c", 1), ("b", 2)], [("tb", 1)], plain_weight=2,
                                               routes=[{"match": {"path_prefix": "/new/"}, "backend": "plain"}]),
             True, {"b", "c"}, {"tb"}),
        ]
        for i, (what, cfg, applied, ws_names, tcp_names) in enumerate(steps):
            with self.subTest(reload=what):
                self.reload(lb, cfg, applied)
                # The open tunnels go on, on their original servers.
                self.assertEqual(ws.echo(f"after reload {i}".encode()), f"a:after reload {i}".encode())
                self.assertEqual(tcp.echo(f"after reload {i}".encode()), f"after reload {i}".encode())
                # The idle keep-alive connection too, with the new config for its next request.
                r = keep.get("/")
                self.assertEqual(r.status, 200)
                self.assertIn(r.whoami_name(), ws_names)
                # New connections take the new config.
                if ws_names == {"b", "c"} or len(ws_names) == 1:
                    self.assertEqual(self.new_ws_names(), ws_names)
                else:
                    self.assertLessEqual(self.new_ws_names(), ws_names)
                self.assertLessEqual(self.new_tcp_names(), tcp_names)
        with HttpConn(self.port) as c:
            self.assertEqual(c.get("/new/x").whoami_name(), "w1")
        # Big messages still flow both ways through the old tunnels.
        big = os.urandom(3000)
        self.assertEqual(tcp.echo(big.hex().encode()), big.hex().encode())
        self.assertEqual(ws.echo(b"y" * 70000), b"a:" + b"y" * 70000)
        # And they end cleanly.
        ws.close(self)
        tcp.close(self)
        self.assertTrue(lb.proc.alive())
        stderr = lb.proc.stderr()
        self.assertEqual(stderr.count("keeping the running config"), 1, stderr[-3000:])

    def test_websocket_over_h2_and_request_in_flight_survive_reload(self):
        lb = self.start_weir(self.config([("a", 1)], [("ta", 1)]))
        h2 = RawH2(self.port)
        self.addCleanup(h2.close)
        sid = h2.connect_ws()
        self.assertEqual(h2.ws_echo(sid, b"hello"), b"a:hello")
        # A slow request in flight on the same connection.
        slow = h2.get("/slow?delay=3s")
        wait_until(lambda: lb.server("plain", "w1")["active_requests"] == 1, 10,
                   what="the slow request in flight")
        self.reload(lb, self.config([("b", 1)], [("ta", 1)], plain_weight=2))
        # The connection is told to go away, but keeps what it has open.
        h2.pump(lambda: h2.goaway is not None, 10)
        last, code = h2.goaway
        self.assertEqual(code, 0, "GOAWAY with an error")
        self.assertGreaterEqual(last, slow, "GOAWAY's last stream id drops an open stream")
        for i in range(3):
            self.assertEqual(h2.ws_echo(sid, f"after {i}".encode()), f"a:after {i}".encode())
        self.reload(lb, BROKEN, applied=False)
        self.assertEqual(h2.ws_echo(sid, b"after the refused reload"), b"a:after the refused reload")
        h2.pump(lambda: slow in h2.ended, 15)
        self.assertEqual(h2.status(slow), 200)
        self.assertIn("Name: w1", h2.data[slow].decode())
        self.assertEqual(h2.resets, {})
        # A new HTTP/2 connection has the new config.
        h2b = RawH2(self.port)
        self.addCleanup(h2b.close)
        sid_b = h2b.connect_ws()
        self.assertEqual(h2b.ws_echo(sid_b, b"new"), b"b:new")
        self.assertEqual(h2.ws_echo(sid, b"old"), b"a:old")
        # The old stream ends cleanly; with nothing open left, the old connection closes.
        h2.send(sid, ws_frame(struct.pack("!H", 1000), opcode=8), end=True)
        self.assertEqual(h2.ws_read(sid), (0x88, struct.pack("!H", 1000)))
        h2.pump(lambda: sid in h2.ended, 10)
        h2.pump(lambda: h2.eof, 10)
        self.assertEqual(h2.resets, {})
        self.assertTrue(lb.proc.alive())
        # RFC 8441 to RFC 6455: weir makes the Sec-WebSocket-Key an HTTP/2 client does not send
        # (a conforming WebSocket server refuses an Upgrade without one).
        self.assertEqual(len(self.handshakes), 2)
        for fields in self.handshakes:
            self.assertRegex(fields.get("sec-websocket-key", ""), r"^[A-Za-z0-9+/]{22}==$",
                             f"the Upgrade weir sent for an HTTP/2 WebSocket: {fields}")

    def test_slow_download_survives_reloads(self):
        lb = self.start_weir(self.config([("a", 1)], [("ta", 1)]))
        size = 16 << 20
        with HttpConn(self.port, timeout=20) as c:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
            c.send(build_request("GET", f"/slow?size={size}", host="example.test"))
            r = c.read_head()
            self.assertEqual(r.status, 200, r.raw_head)
            length = int(r.header("Content-Length"))
            self.assertGreaterEqual(length, size)
            got = len(c.buf)
            c.buf.clear()
            reloads = [(1 << 20, self.config([("b", 1)], [("tb", 1)], plain_weight=3)),
                       (3 << 20, BROKEN),
                       (5 << 20, self.config([("a", 1)], [("ta", 1)], plain_weight=1))]
            at = []
            while got < length:
                if reloads and got >= reloads[0][0]:
                    _, cfg = reloads.pop(0)
                    self.reload(lb, cfg, applied=cfg is not BROKEN)
                    at.append(got)
                chunk = c.sock.recv(min(65536, length - got))
                if not chunk:
                    self.fail(f"download cut after {got} of {length} bytes (reloads at {at})")
                got += len(chunk)
                time.sleep(0.002)  # the test: a slow reader, so that the download outlasts the reloads
            self.assertEqual(len(at), 3)
            self.assertLess(at[-1], length // 2, "the download ended too early for the test to mean anything")
            # The connection goes on: the next request on it takes the last config.
            self.assertEqual(c.get("/slow").whoami_name(), "w1")


if __name__ == "__main__":
    unittest.main()
