"""Listener `mode: tcp`: a layer-4 tunnel. HTTP through it untouched, round robin per connection,
connect failures retried on another server, no server -> closed without a byte, arbitrary
binary bytes both ways with half-close."""

import os
import socket
import threading
import time
import unittest

from weirtest import HttpConn, WeirTestCase, closed_without_bytes, free_port, http_get


def tcp_lb(test, servers, **backend_extra):
    return test.start_lb(servers, listener_extra={"mode": "tcp"}, backend_extra=backend_extra or None)


class TcpTunnelHttpTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.a = self.start_whoami("a")
        self.b = self.start_whoami("b")

    def test_http_through_tunnel_round_robin_per_connection(self):
        lb = tcp_lb(self, [{"address": self.a.address, "name": "a"}, {"address": self.b.address, "name": "b"}])
        names = []
        for i in range(6):
            r = http_get(lb.port, f"/t{i}", headers={"X-Forwarded-For": "1.2.3.4", "x-MiXeD": "Case"})
            self.assertWhoami(r)
            names.append(r.whoami_name())
            # Bytes pass untouched: no header added or replaced, the client's own XFF arrives.
            self.assertIn("1.2.3.4", r.text)
            self.assertNotIn("127.0.0.1, ", r.text)
        # (The harness's readiness probe was a connection too: the sequence may start at b.)
        self.assertIn(names, (["a", "b"] * 3, ["b", "a"] * 3))

    def test_keepalive_connection_stays_on_one_server(self):
        lb = tcp_lb(self, [{"address": self.a.address, "name": "a"}, {"address": self.b.address, "name": "b"}])
        for _ in range(2):
            with HttpConn(lb.port) as c:
                names = {c.get(f"/k{i}").whoami_name() for i in range(10)}
                self.assertEqual(len(names), 1, names)

    def test_dead_server_retried_every_connection_succeeds(self):
        dead = free_port()
        lb = tcp_lb(self, [{"address": f"127.0.0.1:{dead}", "name": "dead"},
                           {"address": self.a.address, "name": "a"}], retries=1)
        # Within the retry budget (10 saved up): every connection that picks dead is retried.
        for i in range(8):
            r = http_get(lb.port, f"/d{i}")
            self.assertWhoami(r, "a")

    def test_dead_server_with_passive_ejection_every_connection_succeeds(self):
        dead = free_port()
        lb = tcp_lb(self, [{"address": f"127.0.0.1:{dead}", "name": "dead"},
                           {"address": self.a.address, "name": "a"}],
                    retries=1, passive={"failures": 1, "cooldown": "30s"})
        for i in range(40):
            r = http_get(lb.port, f"/d{i}")
            self.assertWhoami(r, "a")
        lb.proc.wait_log(r"server web/dead ejected for 30000 ms: 1 consecutive failure", timeout=5)
        self.assertIs(lb.server("web", "dead")["healthy"], False)

    def test_dead_server_costs_no_connection(self):
        # Half the picks would go to a dead server: a refused connect takes it out of every
        # worker's picks at once (no passive config) and the tunnel goes to the other server;
        # connect-level retries spend no retry budget, so none of the 100 connections fails.
        dead = free_port()
        lb = tcp_lb(self, [{"address": f"127.0.0.1:{dead}", "name": "dead"},
                           {"address": self.a.address, "name": "a"}], retries=1)
        failed = 0
        for i in range(100):
            with socket.create_connection(("127.0.0.1", lb.port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                closed, data = closed_without_bytes(s, 5)
                self.assertTrue(closed)
                if not data:
                    failed += 1
                else:
                    self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:100])
        self.assertEqual(failed, 0)
        st = lb.server("web", "dead")
        self.assertGreaterEqual(st["connect_failures"], 1)
        self.assertLessEqual(st["connect_failures"], 6, st)
        self.assertEqual(lb.metrics().get("weir_retries_total", kind="unseen"), st["connect_failures"])

    def test_only_dead_servers_close_without_bytes(self):
        lb = tcp_lb(self, [{"address": f"127.0.0.1:{free_port()}", "name": "d1"},
                           {"address": f"127.0.0.1:{free_port()}", "name": "d2"}], retries=1)
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", lb.port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                closed, data = closed_without_bytes(s, 5)
                self.assertTrue(closed, "the tunnel to no server was not closed")
                self.assertEqual(data, b"")
        self.assertTrue(lb.proc.alive())

    def test_all_servers_down_by_health_check_closes(self):
        lb = tcp_lb(self, [{"address": self.a.address, "name": "a"}],
                    health_check={"type": "tcp", "interval": "200ms", "timeout": "200ms", "rise": 1, "fall": 1})
        self.assertWhoami(http_get(lb.port, "/"), "a")
        self.a.proc.stop()
        lb.proc.wait_log(r"server web/a DOWN", timeout=10)
        with socket.create_connection(("127.0.0.1", lb.port), timeout=5) as s:
            closed, data = closed_without_bytes(s, 5)
            self.assertTrue(closed)
            self.assertEqual(data, b"")


class TcpEchoTest(WeirTestCase):
    def start_echo(self, after_eof=b""):
        def echo(c):
            while True:
                data = c.recv(65536)
                if not data:
                    break
                c.sendall(data)
            # The client half-closed: we can still talk the other way.
            if after_eof:
                c.sendall(after_eof)
            c.shutdown(socket.SHUT_WR)

        return self.start_server(echo)

    def test_binary_echo_both_ways_with_half_close(self):
        be = self.start_echo(after_eof=b"\x00BYE\xff")
        lb = tcp_lb(self, [be.port])
        payload = os.urandom(512 * 1024) + bytes(range(256)) + b"\r\n\r\n\x00\x00"
        with socket.create_connection(("127.0.0.1", lb.port), timeout=10) as s:
            def send():
                for i in range(0, len(payload), 7919):
                    s.sendall(payload[i:i + 7919])
                s.shutdown(socket.SHUT_WR)

            t = threading.Thread(target=send, daemon=True)
            t.start()
            got = bytearray()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            t.join(10)
        self.assertFalse(t.is_alive())
        self.assertEqual(len(got), len(payload) + 5)
        self.assertEqual(bytes(got[:len(payload)]), payload)
        self.assertEqual(bytes(got[len(payload):]), b"\x00BYE\xff")

    def test_server_half_close_client_keeps_sending(self):
        received = []
        done = threading.Event()

        def greeter(c):
            c.sendall(b"HELLO\x00")
            c.shutdown(socket.SHUT_WR)  # the server is done talking, but still listens
            data = b""
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
            if not data:
                return  # the harness's readiness probe: tunnelled too, and closed at once
            received.append(data)
            done.set()

        be = self.start_server(greeter)
        lb = tcp_lb(self, [be.port])
        with socket.create_connection(("127.0.0.1", lb.port), timeout=10) as s:
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            self.assertEqual(got, b"HELLO\x00")
            # Our direction is still open after the server's FIN came through.
            body = os.urandom(100000)
            s.sendall(body)
            s.shutdown(socket.SHUT_WR)
            self.assertTrue(done.wait(10), "the server never saw the client's data and FIN")
        self.assertEqual(received, [body])

    def test_many_concurrent_tunnels(self):
        be = self.start_echo()
        lb = tcp_lb(self, [be.port])
        results = []
        lock = threading.Lock()

        def one(i):
            msg = f"tunnel-{i}-".encode() * 100
            with socket.create_connection(("127.0.0.1", lb.port), timeout=10) as s:
                s.sendall(msg)
                s.shutdown(socket.SHUT_WR)
                got = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            with lock:
                results.append(got == msg)

        ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(30)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(20)
        self.assertEqual(results, [True] * 30)

    def test_backend_reset_closes_client(self):
        def reset(c):
            c.recv(100)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()

        be = self.start_server(reset)
        lb = tcp_lb(self, [be.port])
        with socket.create_connection(("127.0.0.1", lb.port), timeout=5) as s:
            s.sendall(b"ping")
            closed, _ = closed_without_bytes(s, 5)
            self.assertTrue(closed)
        self.assertTrue(lb.proc.alive())


if __name__ == "__main__":
    unittest.main()
