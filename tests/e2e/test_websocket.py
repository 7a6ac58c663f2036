"""Upgrades: a WebSocket tunnel through weir to whoami's echo; h2c is never forwarded."""

import base64
import hashlib
import os
import struct
import unittest

from weirtest import HttpConn, WeirTestCase, build_request

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked, final client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frame(conn: HttpConn):
    """(opcode byte, masked?, payload) of one server frame."""
    def need(n):
        while len(conn.buf) < n:
            if not conn._fill():
                raise EOFError("connection closed in a frame")
    need(2)
    b0, b1 = conn.buf[0], conn.buf[1]
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        need(4)
        n = struct.unpack("!H", bytes(conn.buf[2:4]))[0]
        pos = 4
    elif n == 127:
        need(10)
        n = struct.unpack("!Q", bytes(conn.buf[2:10]))[0]
        pos = 10
    masked = bool(b1 & 0x80)
    if masked:
        pos += 4
    need(pos + n)
    payload = bytes(conn.buf[pos:pos + n])
    del conn.buf[:pos + n]
    return b0, masked, payload


class WebSocketTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.w = self.start_whoami("ws")
        self.lb = self.start_lb([self.w.port], backend_extra={"timeouts": {"response": "2s"}})

    def handshake(self, c: HttpConn):
        key = base64.b64encode(os.urandom(16)).decode()
        c.send(build_request("GET", "/chat", headers=[
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
        r = c.read_response()
        self.assertEqual(r.status, 101, r.raw_head)
        self.assertEqual((r.header("Upgrade") or "").lower(), "websocket")
        self.assertIn("upgrade", (r.header("Connection") or "").lower())
        expect = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.assertEqual(r.header("Sec-WebSocket-Accept"), expect)
        return r

    def test_echo_text_frames(self):
        with HttpConn(self.lb.port) as c:
            self.handshake(c)
            for msg in [b"hello", b"", "h\u00e9llo w\u00f6rld".encode(), b"x" * 125, b"y" * 126,
                        b"z" * 70000]:
                c.send(ws_frame(msg))
                op, masked, payload = read_frame(c)
                self.assertEqual(op, 0x81)
                self.assertFalse(masked, "server frames must not be masked")
                self.assertEqual(payload, msg)

    def test_several_frames_in_one_write(self):
        with HttpConn(self.lb.port) as c:
            self.handshake(c)
            msgs = [f"message {i}".encode() for i in range(10)]
            c.send(b"".join(ws_frame(m) for m in msgs))
            for m in msgs:
                self.assertEqual(read_frame(c)[2], m)

    def test_binary_frame_and_close(self):
        with HttpConn(self.lb.port) as c:
            self.handshake(c)
            data = os.urandom(3000)
            c.send(ws_frame(data, opcode=2))
            op, _, payload = read_frame(c)
            self.assertEqual(op, 0x82)
            self.assertEqual(payload, data)
            # Closing the client side ends the tunnel both ways.
            c.sock.shutdown(1)
            self.assertTrue(c.wait_closed(10))

    def test_tunnel_outlives_response_timeout(self):
        # Once upgraded, the response timeout no longer applies: the tunnel idles on.
        import time
        with HttpConn(self.lb.port) as c:
            self.handshake(c)
            time.sleep(2.5)  # the test: the tunnel stays silent longer than the 2 s response timeout
            c.send(ws_frame(b"still here"))
            self.assertEqual(read_frame(c)[2], b"still here")

    def test_h2c_upgrade_not_forwarded(self):
        with HttpConn(self.lb.port) as c:
            c.send(build_request("GET", "/h2c", headers=[
                ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")]))
            r = c.read_response()
            self.assertWhoami(r, "ws")
            self.assertIn("GET /h2c HTTP/1.1", r.text)
            text = r.text.lower()
            self.assertNotIn("upgrade:", text)
            self.assertNotIn("http2-settings", text)
            # Still plain HTTP/1.1 afterwards.
            r2 = c.get("/next")
            self.assertIn("GET /next", r2.text)

    def test_upgrade_refused_by_backend_stays_http(self):
        # A backend answering 200 to an Upgrade: no tunnel, the connection stays HTTP.
        with HttpConn(self.lb.port) as c:
            c.send(build_request("GET", "/x", headers=[("Upgrade", "foo/1"), ("Connection", "Upgrade")]))
            r = c.read_response()
            self.assertWhoami(r, "ws")
            r2 = c.get("/y")
            self.assertWhoami(r2, "ws")
            self.assertIn("GET /y", r2.text)


if __name__ == "__main__":
    unittest.main()
