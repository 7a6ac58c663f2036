"""Trailers forwarded both ways (upstream.md), translated between HTTP/1.1 chunked trailer
sections and HTTP/2 trailing HEADERS, with an HTTP/1.1 origin written here (raw sockets, so every
byte of the framing it gets is checked):

- an HTTP/2 client's DATA + trailing HEADERS reach the origin as a chunked body whose last chunk
  carries the trailers; the origin's chunked trailers reach the HTTP/2 client as a trailing
  HEADERS frame with END_STREAM; a request with content-length cannot carry them (dropped);
- the same with an HTTP/1.1 client (chunked both ways);
- fields that must not travel in trailers (content-length, host, transfer-encoding, set-cookie...)
  are left out both ways;
- a trailer section over 16 KiB from the origin aborts that response (the HTTP/1.1 client's
  connection closes without the last chunk, the HTTP/2 stream is reset); an HTTP/2 client's
  trailing HEADERS over the head limit reset its stream; weir keeps serving;
- through a body filter (gzip compression) the trailers still arrive.
"""

import gzip
import socket
import threading
import unittest

import h2.config
import h2.connection
import h2.errors
import h2.events

from weirtest import (HOST, IO_TIMEOUT, Env, HttpConn, IncompleteResponse, ScriptedServer, WeirTestCase,
                      free_port, lb_config)

BODY = b"hello world, " * 100
TRAILERS = [("grpc-status", "0"), ("x-trailer", "v")]
FORBIDDEN = [("Content-Length", "5"), ("Host", "evil.test"), ("Transfer-Encoding", "gzip"),
             ("Set-Cookie", "a=b"), ("Content-Type", "text/html"), ("Trailer", "x-ok")]
TEXT = b"The quick brown fox jumps over the lazy dog. " * 200


# ---- the origin: HTTP/1.1 over raw sockets, keep-alive, records what it got

class Reader:
    def __init__(self, c: socket.socket):
        self.c = c
        self.buf = bytearray()

    def line(self) -> bytes | None:
        while b"\r\n" not in self.buf:
            chunk = self.c.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        i = self.buf.index(b"\r\n")
        out = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.c.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class Seen:
    """One request as the origin got it."""

    def __init__(self, method, path, headers, body, trailers):
        self.method, self.path, self.headers, self.body, self.trailers = method, path, headers, body, trailers

    def header(self, name):
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def chunked(payload: bytes, trailer_lines: bytes, piece: int = 300) -> bytes:
    out = b""
    for i in range(0, len(payload), piece):
        part = payload[i:i + piece]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n" + trailer_lines + b"\r\n"


def lines(fields) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in fields)


class Origin:
    def __init__(self, env: Env):
        self.seen: dict[str, Seen] = {}
        self.lock = threading.Lock()
        self.server = ScriptedServer(self.handle)
        env._add_cleanup(self.server.stop)

    def take(self, rid: str) -> Seen:
        with self.lock:
            return self.seen.pop(rid)

    def handle(self, c: socket.socket):
        r = Reader(c)
        while True:
            start = r.line()
            if not start:
                return
            method, path, _ = start.decode().split(" ", 2)
            headers = []
            while (line := r.line()):
                k, _, v = line.decode("latin-1").partition(":")
                headers.append((k, v.strip()))
            fields = {k.lower(): v for k, v in headers}
            body, trailers = b"", []
            if "chunked" in fields.get("transfer-encoding", ""):
                while True:
                    size = int(r.line().split(b";")[0], 16)
                    if size == 0:
                        break
                    body += r.exactly(size)
                    assert r.exactly(2) == b"\r\n"
                while (line := r.line()):
                    k, _, v = line.decode("latin-1").partition(":")
                    trailers.append((k, v.strip()))
            elif "content-length" in fields:
                body = r.exactly(int(fields["content-length"]))
            with self.lock:
                self.seen[fields.get("x-id", path)] = Seen(method, path, headers, body, trailers)
            self.answer(c, path)

    def answer(self, c: socket.socket, path: str):
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
        if path.endswith("/trailers"):
            c.sendall(head + chunked(BODY, lines(TRAILERS)))
        elif path.endswith("/forbidden"):
            c.sendall(head + chunked(BODY, lines(FORBIDDEN + [("X-Ok", "yes")])))
        elif path.endswith("/huge"):
            # 17 KiB of trailer fields: over weir's 16 KiB limit.
            big = b"".join(b"x-pad-%02d: %s\r\n" % (i, b"p" * 1000) for i in range(17))
            c.sendall(head + chunked(BODY, big))
            c.recv(1)  # weir gives up on this connection
            raise EOFError
        elif path.endswith("/text"):
            c.sendall(head + chunked(TEXT, lines(TRAILERS), piece=1000))
        else:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


# ---- an HTTP/2 client (python3-h2), h2c with prior knowledge

class H2Client:
    def __init__(self, port: int):
        self.sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()

    def close(self):
        self.sock.close()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method, path, headers=(), body=b"", trailers=None, content_length=False):
        """Sends a request (DATA, then trailing HEADERS when trailers are given); returns the
        stream's events until it ends or is reset."""
        sid = self.conn.get_next_available_stream_id()
        hs = [(":method", method), (":scheme", "http"), (":authority", "example.test"), (":path", path)]
        if content_length:
            hs.append(("content-length", str(len(body))))
        hs += list(headers)
        self.conn.send_headers(sid, hs, end_stream=not body and not trailers)
        if body:
            self.conn.send_data(sid, body, end_stream=not trailers)
        if trailers:
            self.conn.send_headers(sid, list(trailers), end_stream=True)
        self.flush()
        return self.events(sid)

    def events(self, sid):
        out = []
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(f"connection closed; events so far: {out}")
            for e in self.conn.receive_data(data):
                if getattr(e, "stream_id", None) != sid:
                    continue
                out.append(e)
                if isinstance(e, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(e.flow_controlled_length, sid)
                if isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)):
                    self.flush()
                    return out
            self.flush()


class H2Response:
    def __init__(self, events):
        self.events = events
        self.headers = next((dict(e.headers) for e in events if isinstance(e, h2.events.ResponseReceived)), {})
        self.body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
        t = [e for e in events if isinstance(e, h2.events.TrailersReceived)]
        self.trailers = list(t[0].headers) if t else None
        # END_STREAM on the trailing HEADERS frame (h2 ties the StreamEnded to the frame that had it).
        self.ended_by_trailers = bool(t) and t[0].stream_ended is not None
        self.data_ended = any(isinstance(e, h2.events.DataReceived) and e.stream_ended for e in events)
        self.reset = next((e.error_code for e in events if isinstance(e, h2.events.StreamReset)), None)


class TrailersTest(WeirTestCase):
    @classmethod
    def setUpClass(cls):
        env = Env(cls.addClassCleanup)
        cls.origin = Origin(env)
        routes = [
            {"match": {"path_prefix": "/gz/"}, "backend": "origin", "compression": {"algorithms": ["gzip"]}},
            {"match": {"path_prefix": "/buf/"}, "backend": "origin", "request_buffering": {"max": "64KiB"}},
            {"match": {"path_prefix": "/"}, "backend": "origin"},
        ]
        backends = [{"name": "origin", "servers": [{"address": cls.origin.server.address}]}]
        cls.port = free_port()
        cls.lb = env.start_weir(lb_config(cls.port, [], routes=routes, backends=backends,
                                          listener_extra={"h2c": True}))

    def h2(self) -> H2Client:
        c = H2Client(self.port)
        self.addCleanup(c.close)
        return c

    def h1(self) -> HttpConn:
        c = HttpConn(self.port)
        self.addCleanup(c.close)
        return c

    def assertServes(self):
        """weir still answers, on a fresh connection of each protocol."""
        r = self.h1().get("/plain")
        self.assertEqual((r.status, r.body), (200, b"ok"))
        r = H2Response(self.h2().request("GET", "/plain"))
        self.assertEqual((r.headers.get(":status"), r.body), ("200", b"ok"), r.events)

    # ---- HTTP/2 client

    def test_h2_client_trailers_both_ways(self):
        c = self.h2()
        r = H2Response(c.request("POST", "/trailers", [("x-id", "h2-1")], body=BODY,
                                 trailers=[("x-checksum", "abc123"), ("grpc-timeout", "1S")]))
        seen = self.origin.take("h2-1")
        # No content-length: chunked towards the HTTP/1.1 origin, the trailers in its last chunk.
        self.assertEqual(seen.header("Transfer-Encoding"), "chunked")
        self.assertIsNone(seen.header("Content-Length"))
        self.assertEqual(seen.body, BODY)
        self.assertEqual(seen.trailers, [("x-checksum", "abc123"), ("grpc-timeout", "1S")])
        # The origin's chunked trailers: a trailing HEADERS frame carrying END_STREAM.
        self.assertEqual(r.headers.get(":status"), "200", r.events)
        self.assertEqual(r.body, BODY)
        self.assertEqual(r.trailers, TRAILERS)
        self.assertTrue(r.ended_by_trailers, r.events)
        self.assertFalse(r.data_ended, "END_STREAM on DATA although trailers follow")
        # The next stream on the same connection: no trailers on either side.
        r = H2Response(c.request("POST", "/plain", [("x-id", "h2-2")], body=b"x"))
        seen = self.origin.take("h2-2")
        self.assertEqual((seen.body, seen.trailers), (b"x", []))
        self.assertEqual((r.body, r.trailers), (b"ok", None))

    def test_h2_client_trailers_only(self):
        """HEADERS, then trailing HEADERS without any DATA: an empty chunked body with trailers."""
        r = H2Response(self.h2().request("POST", "/trailers", [("x-id", "h2-only")], trailers=[("x-sum", "0")]))
        seen = self.origin.take("h2-only")
        self.assertEqual((seen.header("Transfer-Encoding"), seen.body, seen.trailers), ("chunked", b"", [("x-sum", "0")]))
        self.assertEqual((r.body, r.trailers), (BODY, TRAILERS))

    def test_h2_request_with_content_length_drops_trailers(self):
        r = H2Response(self.h2().request("POST", "/trailers", [("x-id", "h2-cl")], body=b"12345",
                                         trailers=[("x-checksum", "abc")], content_length=True))
        seen = self.origin.take("h2-cl")
        self.assertEqual((seen.header("Content-Length"), seen.header("Transfer-Encoding")), ("5", None))
        self.assertEqual(seen.body, b"12345")
        self.assertEqual((r.body, r.trailers), (BODY, TRAILERS))

    def test_h2_forbidden_trailers_dropped(self):
        r = H2Response(self.h2().request("POST", "/forbidden", [("x-id", "h2-forbidden")], body=b"a",
                                         trailers=[("content-length", "1"), ("host", "evil.test"),
                                                   ("authorization", "secret"), ("x-ok", "yes")]))
        seen = self.origin.take("h2-forbidden")
        self.assertEqual(seen.trailers, [("x-ok", "yes")])
        self.assertEqual(r.body, BODY)
        self.assertEqual(r.trailers, [("x-ok", "yes")])
        self.assertTrue(r.ended_by_trailers)

    def test_h2_client_oversized_trailers_reset(self):
        """Trailing HEADERS over the head limit (max_header_bytes, 16 KiB): the stream is reset."""
        c = self.h2()
        big = [(f"x-pad-{i:02d}", "p" * 1000) for i in range(20)]
        r = H2Response(c.request("POST", "/trailers", [("x-id", "h2-big")], body=b"a", trailers=big))
        self.assertEqual(r.reset, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, r.events)
        self.assertEqual((r.body, r.trailers), (b"", None))
        # The connection goes on.
        r = H2Response(c.request("GET", "/plain"))
        self.assertEqual(r.body, b"ok", r.events)
        self.assertServes()

    def test_h2_oversized_response_trailers_abort(self):
        c = self.h2()
        r = H2Response(c.request("GET", "/huge"))
        self.assertEqual(r.reset, h2.errors.ErrorCodes.INTERNAL_ERROR,
                         f"a response with a 17 KiB trailer section passed: {r.events}")
        self.assertIsNone(r.trailers)
        self.assertFalse(r.data_ended)
        r = H2Response(c.request("GET", "/trailers"))
        self.assertEqual((r.body, r.trailers), (BODY, TRAILERS))
        self.assertServes()

    # ---- HTTP/1.1 client

    def test_h1_client_trailers_both_ways(self):
        c = self.h1()
        req = (b"POST /trailers HTTP/1.1\r\nHost: example.test\r\nX-Id: h1-1\r\nTransfer-Encoding: chunked\r\n\r\n"
               + chunked(BODY, b"X-Checksum: abc123\r\nX-Other:  two words \r\n", piece=700))
        c.send(req)
        r = c.read_response()
        seen = self.origin.take("h1-1")
        self.assertEqual(seen.header("Transfer-Encoding"), "chunked")
        self.assertEqual(seen.body, BODY)
        self.assertEqual(seen.trailers, [("X-Checksum", "abc123"), ("X-Other", "two words")])
        self.assertEqual((r.status, r.framing, r.body), (200, "chunked", BODY))
        self.assertEqual(r.trailers, TRAILERS)
        # Keep-alive goes on: a request with Content-Length and no trailers.
        r = c.request("POST", "/plain", [("X-Id", "h1-2")], body=b"abc")
        self.assertEqual((r.status, r.body), (200, b"ok"))
        self.assertEqual(self.origin.take("h1-2").trailers, [])

    def test_request_buffering_keeps_trailers(self):
        """request_buffering: the body (and its last chunk) is read whole before a server is picked."""
        c = self.h1()
        c.send(b"POST /buf/trailers HTTP/1.1\r\nHost: example.test\r\nX-Id: h1-buf\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + chunked(BODY, b"X-Checksum: buffered\r\n"))
        r = c.read_response()
        seen = self.origin.take("h1-buf")
        self.assertEqual((seen.body, seen.trailers), (BODY, [("X-Checksum", "buffered")]))
        self.assertEqual(r.trailers, TRAILERS)
        r = H2Response(self.h2().request("POST", "/buf/trailers", [("x-id", "h2-buf")], body=BODY,
                                         trailers=[("x-checksum", "buffered")]))
        seen = self.origin.take("h2-buf")
        self.assertEqual((seen.body, seen.trailers), (BODY, [("x-checksum", "buffered")]))
        self.assertEqual((r.trailers, r.ended_by_trailers), (TRAILERS, True))

    def test_h1_forbidden_trailers_dropped(self):
        c = self.h1()
        c.send(b"POST /forbidden HTTP/1.1\r\nHost: example.test\r\nX-Id: h1-forbidden\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"abc", lines(FORBIDDEN + [("X-Ok", "yes")])))
        r = c.read_response()
        seen = self.origin.take("h1-forbidden")
        self.assertEqual(seen.trailers, [("X-Ok", "yes")])
        self.assertEqual(seen.header("Host"), "example.test")
        self.assertEqual(r.trailers, [("X-Ok", "yes")])
        self.assertEqual(r.body, BODY)

    def test_h1_oversized_response_trailers_abort(self):
        c = self.h1()
        c.send(b"GET /huge HTTP/1.1\r\nHost: example.test\r\n\r\n")
        with self.assertRaises(IncompleteResponse, msg="a response with a 17 KiB trailer section passed"):
            c.read_response()
        self.assertTrue(c.is_closed())
        self.assertServes()

    def test_h1_10_client_gets_no_trailers(self):
        """HTTP/1.0: the body is close-delimited, where trailers have no place."""
        c = self.h1()
        c.send(b"GET /trailers HTTP/1.0\r\nHost: example.test\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.framing, r.body, r.trailers), (200, "close", BODY, []))

    # ---- through a body filter

    def test_gzip_filter_keeps_trailers(self):
        c = self.h1()
        r = c.request("GET", "/gz/text", [("Accept-Encoding", "gzip")])
        self.assertEqual((r.status, r.header("Content-Encoding"), r.framing), (200, "gzip", "chunked"))
        self.assertEqual(gzip.decompress(r.body), TEXT)
        self.assertEqual(r.trailers, TRAILERS)
        r = H2Response(self.h2().request("GET", "/gz/text", [("accept-encoding", "gzip")]))
        self.assertEqual(r.headers.get("content-encoding"), "gzip", r.events)
        self.assertEqual(gzip.decompress(r.body), TEXT)
        self.assertEqual(r.trailers, TRAILERS)
        self.assertTrue(r.ended_by_trailers)


if __name__ == "__main__":
    unittest.main()
