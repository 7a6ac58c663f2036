"""RFC 8441: WebSockets over HTTP/2 (extended CONNECT) through weir to an HTTP/1.1 Upgrade
server (`weir whoami`'s echo). The client is python3-h2 on a raw socket (h2c prior knowledge).

What is checked: weir advertises SETTINGS_ENABLE_CONNECT_PROTOCOL; `:protocol websocket`
becomes an HTTP/1.1 Upgrade (with a Sec-WebSocket-Key weir makes, since HTTP/2 clients send
none); the server's 101 is the client's 200 without Sec-WebSocket-Accept; frames go both ways
as DATA, large ones too (flow control); several WebSockets and plain requests share one
connection; the client's END_STREAM / a reset ends the tunnel; an idle WebSocket outlives the
backend's response timeout.
"""

import os
import socket
import struct
import time
import unittest

import h2.config
import h2.connection
import h2.events
import h2.settings

from test_websocket import ws_frame
from weirtest import HOST, WeirTestCase


def parse_frame(buf: bytearray):
    """(opcode byte, masked?, payload) of one server frame at the start of buf, consumed; or None."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    n, pos = b1 & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = struct.unpack("!H", bytes(buf[2:4]))[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = struct.unpack("!Q", bytes(buf[2:10]))[0], 10
    masked = bool(b1 & 0x80)
    if masked:
        pos += 4
    if len(buf) < pos + n:
        return None
    payload = bytes(buf[pos:pos + n])
    del buf[:pos + n]
    return b0, masked, payload


class H2Client:
    """A bounded HTTP/2 client: every wait has a deadline."""

    def __init__(self, port: int):
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()
        self.data = {}      # stream id -> bytearray
        self.heads = {}     # stream id -> headers
        self.ended = set()
        self.resets = {}
        self.settings_seen = False

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def pump(self, until, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting on the HTTP/2 connection")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("weir closed the connection")
            for ev in self.conn.receive_data(chunk):
                if isinstance(ev, h2.events.RemoteSettingsChanged):
                    self.settings_seen = True
                elif isinstance(ev, h2.events.ResponseReceived):
                    self.heads[ev.stream_id] = [(k.decode(), v.decode()) for k, v in ev.headers]
                elif isinstance(ev, h2.events.DataReceived):
                    self.data.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    self.ended.add(ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    self.resets[ev.stream_id] = ev.error_code
            self.flush()

    def connect_ws(self, path="/chat"):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                                     (":scheme", "http"), (":path", path),
                                     (":authority", "example.test"),
                                     ("sec-websocket-version", "13")])
        self.flush()
        self.pump(lambda: sid in self.heads or sid in self.resets)
        return sid

    def send(self, sid, data: bytes):
        view = memoryview(data)
        while view:
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.pump(lambda: self.conn.local_flow_control_window(sid) > 0)
                continue
            self.conn.send_data(sid, bytes(view[:window]))
            self.flush()
            view = view[window:]

    def read_ws(self, sid, timeout=10.0):
        buf = self.data.setdefault(sid, bytearray())
        frame = [None]

        def got():
            frame[0] = parse_frame(buf)
            return frame[0] is not None
        self.pump(got, timeout)
        return frame[0]


class WebSocketOverH2Test(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.w = self.start_whoami("ws2")
        self.lb = self.start_lb([self.w.port], listener_extra={"h2c": True},
                                backend_extra={"timeouts": {"response": "2s"}})
        self.c = H2Client(self.lb.port)
        self.addCleanup(self.c.close)
        self.c.pump(lambda: self.c.settings_seen)

    def test_settings_enable_connect_protocol(self):
        self.assertEqual(
            self.c.conn.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL), 1)

    def test_echo_through_extended_connect(self):
        sid = self.c.connect_ws()
        head = dict(self.c.heads[sid])
        self.assertEqual(head[":status"], "200", head)
        self.assertNotIn("sec-websocket-accept", head)
        self.assertNotIn("upgrade", head)
        self.assertNotIn("connection", head)
        for msg in [b"hello", b"", "h\u00e9llo".encode(), b"x" * 126, b"z" * 70000]:
            self.c.send(sid, ws_frame(msg))
            op, masked, payload = self.c.read_ws(sid)
            self.assertEqual(op, 0x81)
            self.assertFalse(masked)
            self.assertEqual(payload, msg)

    def test_large_binary_frames_flow_control(self):
        sid = self.c.connect_ws()
        self.assertEqual(dict(self.c.heads[sid])[":status"], "200")
        data = os.urandom(600 * 1024)  # whoami's echo holds frames up to 1 MiB
        self.c.send(sid, ws_frame(data, opcode=2))
        op, _, payload = self.c.read_ws(sid, timeout=30)
        self.assertEqual(op, 0x82)
        self.assertEqual(payload, data)

    def test_several_websockets_and_requests_share_the_connection(self):
        sids = [self.c.connect_ws(f"/room/{i}") for i in range(3)]
        # A plain request on the same connection in between.
        rid = self.c.conn.get_next_available_stream_id()
        self.c.conn.send_headers(rid, [(":method", "GET"), (":scheme", "http"), (":path", "/plain"),
                                       (":authority", "example.test")], end_stream=True)
        self.c.flush()
        self.c.pump(lambda: rid in self.c.ended)
        self.assertEqual(dict(self.c.heads[rid])[":status"], "200")
        self.assertIn(b"GET /plain HTTP/1.1", bytes(self.c.data[rid]))
        for i, sid in enumerate(sids):
            self.c.send(sid, ws_frame(f"to room {i}".encode()))
        for i, sid in enumerate(sids):
            self.assertEqual(self.c.read_ws(sid)[2], f"to room {i}".encode())

    def test_close_ends_the_stream(self):
        sid = self.c.connect_ws()
        self.c.send(sid, ws_frame(struct.pack("!H", 1000), opcode=8))
        op, _, payload = self.c.read_ws(sid)
        self.assertEqual(op, 0x88, "the server answers the close frame")
        # Our END_STREAM; the server closes its side; weir ends the stream.
        self.c.conn.end_stream(sid)
        self.c.flush()
        self.c.pump(lambda: sid in self.c.ended or sid in self.c.resets, timeout=10)
        self.assertNotIn(sid, self.c.resets, "a clean close, not a reset")
        # The connection goes on.
        sid2 = self.c.connect_ws()
        self.c.send(sid2, ws_frame(b"again"))
        self.assertEqual(self.c.read_ws(sid2)[2], b"again")

    def test_client_reset_frees_the_server_connection(self):
        sid = self.c.connect_ws()
        self.c.send(sid, ws_frame(b"before reset"))
        self.assertEqual(self.c.read_ws(sid)[2], b"before reset")
        self.c.conn.reset_stream(sid)
        self.c.flush()
        # weir lets go of the server's slot: its metrics say no request is active any more.
        deadline = time.monotonic() + 10
        active = None
        while time.monotonic() < deadline:
            m = self.lb.metrics()
            active = [v for (name, _, v) in m.samples if name == "weir_server_active_requests"]
            if active and all(v == 0 for v in active):
                break
            time.sleep(0.1)
        self.assertTrue(active and all(v == 0 for v in active), active)

    def test_idle_websocket_outlives_response_timeout(self):
        sid = self.c.connect_ws()
        time.sleep(2.5)  # the test: silent longer than the backend's 2 s response timeout
        self.c.send(sid, ws_frame(b"still here"))
        self.assertEqual(self.c.read_ws(sid)[2], b"still here")

    def test_non_websocket_backend_answer_is_passed_on(self):
        # Extended CONNECT to a route whose server answers without upgrading: its answer, not a
        # tunnel (whoami upgrades only "websocket").
        sid = self.c.conn.get_next_available_stream_id()
        self.c.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "not-websocket"),
                                       (":scheme", "http"), (":path", "/x"),
                                       (":authority", "example.test")])
        self.c.flush()
        self.c.pump(lambda: sid in self.c.heads or sid in self.c.resets)
        self.assertEqual(dict(self.c.heads.get(sid, []) or [(":status", "reset")]).get(":status"),
                         "200")


if __name__ == "__main__":
    unittest.main()
