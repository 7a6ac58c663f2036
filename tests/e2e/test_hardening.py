"""Issue 17's hardening, with real processes: a busy port is refused even when its owner set
SO_REUSEPORT (exit 3, one clear line), client aborts are counted as 499/client_closed and not
blamed on servers, slow request bodies get 408 after `timeouts.body` while others are served."""

import socket
import struct
import unittest

from tlstest import CANCEL, H2Conn, rst_frame
from weirtest import HttpConn, WeirTestCase, free_port, http_get, lb_config, wait_until


def stderr_lines(p) -> list[str]:
    return (p.stderr or b"").decode("utf-8", "replace").strip().splitlines()


class BusyPortTest(WeirTestCase):
    def test_port_held_with_so_reuseport_exits_3(self):
        # Another process listening with SO_REUSEPORT: binding with SO_REUSEPORT too would make
        # the kernel split connections between the two. weir must refuse it.
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            for workers in (1, 2):
                cfg = lb_config(port, [free_port()], workers=workers)
                p = self.run_weir("run", "-c", self.write_config(cfg), timeout=15)
                lines = stderr_lines(p)
                self.assertEqual(p.returncode, 3, lines)
                self.assertEqual(len(lines), 1, lines)
                self.assertIn(f"127.0.0.1:{port}", lines[0])
                self.assertIn("in use", lines[0].lower())

    def test_second_weir_on_the_same_address_exits_3(self):
        w = self.start_whoami("only")
        lb = self.start_lb([w.port], workers=2)
        p = self.run_weir("run", "-c", lb.config_path, timeout=15)
        lines = stderr_lines(p)
        self.assertEqual(p.returncode, 3, lines)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn(f"127.0.0.1:{lb.port}", lines[0])
        self.assertIn("in use", lines[0].lower())
        # The first one still gets every connection.
        for i in range(50):
            self.assertWhoami(http_get(lb.port, f"/n{i}"), "only")
        self.assertGreaterEqual(lb.metrics().get("weir_connections_accepted_total"), 50)


class ClientAbortTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.w = self.start_whoami("slow")
        self.lb = self.start_lb([{"address": self.w.address, "name": "slow"}],
                                listener_extra={"h2c": True})

    def idle(self):
        wait_until(lambda: self.lb.server("web", "slow")["active_requests"] == 0, 10,
                   what="the server slot given back")

    def codes(self) -> dict:
        m = self.lb.metrics()
        return {c: m.get("weir_requests_total", listener="web", backend="web", code=str(c))
                for c in (200, 499, 502)}

    def test_client_resetting_while_waiting_is_499_not_502(self):
        # A reset (not a half-close: a client may shut down its sending side and still wait for
        # its answer, as HAProxy and RFC 9112 allow) ends the request at once.
        for i in range(3):
            c = HttpConn(self.lb.port)
            c.send(f"GET /w{i}?delay=2s HTTP/1.1\r\nHost: example.test\r\n\r\n".encode())
            wait_until(lambda: self.lb.server("web", "slow")["active_requests"] == 1, 5,
                       what="the request at the server")
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            self.idle()
        self.assertEqual(self.codes(), {200: 0, 499: 3, 502: 0})
        m = self.lb.metrics()
        self.assertEqual(m.get("weir_client_closed_total", phase="waiting"), 3)
        self.assertEqual(self.lb.server("web", "slow")["connect_failures"], 0)

    def test_client_cutting_its_body_is_499(self):
        c = HttpConn(self.lb.port)
        c.send(b"POST /up HTTP/1.1\r\nHost: example.test\r\nContent-Length: 100000\r\n\r\n"
               + b"x" * 1000)
        wait_until(lambda: self.lb.server("web", "slow")["active_requests"] == 1, 5,
                   what="the request at the server")
        c.close()
        self.idle()
        self.assertEqual(self.codes(), {200: 0, 499: 1, 502: 0})
        self.assertEqual(self.lb.metrics().get("weir_client_closed_total", phase="request"), 1)

    def test_client_closing_during_the_body_keeps_the_status(self):
        c = HttpConn(self.lb.port)
        c.send(b"GET /big?size=50000000 HTTP/1.1\r\nHost: example.test\r\n\r\n")
        self.assertEqual(c.read_head().status, 200)
        c.close()
        self.idle()
        self.assertEqual(self.codes(), {200: 1, 499: 0, 502: 0})
        self.assertEqual(self.lb.metrics().get("weir_client_closed_total", phase="response"), 1)

    def test_http2_stream_cancelled_is_499(self):
        h2 = H2Conn(self.lb.port)
        self.addCleanup(h2.close)
        sid = h2.request("/h2?delay=2s")
        wait_until(lambda: self.lb.server("web", "slow")["active_requests"] == 1, 5,
                   what="the request at the server")
        h2.send(rst_frame(sid, CANCEL))
        self.idle()
        # The connection goes on.
        self.assertEqual(h2.get("/after").status, 200)
        self.assertEqual(self.codes(), {200: 1, 499: 1, 502: 0})
        self.assertEqual(self.lb.metrics().get("weir_client_closed_total", phase="waiting"), 1)


if __name__ == "__main__":
    unittest.main()
