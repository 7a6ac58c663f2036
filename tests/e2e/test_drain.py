"""SIGTERM/SIGINT drain: in-flight requests complete, the process exits 0, new connections
are refused."""

import signal
import socket
import threading
import time
import unittest

from weirtest import HttpConn, WeirTestCase, build_request, wait_until


class DrainTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.w = self.start_whoami("slow")

    def start(self, drain="10s", workers=2):
        return self.start_lb([self.w.port], workers=workers,
                             top_extra={"limits": {"drain_timeout": drain}})

    def in_flight(self, lb):
        return lb.server("web", "web-1")["active_requests"]

    def run_drain(self, sig):
        lb = self.start()
        conns = [HttpConn(lb.port, timeout=15) for _ in range(6)]
        for c in conns:
            self.addCleanup(c.close)
        for i, c in enumerate(conns):
            c.send(build_request("GET", f"/?delay=1500ms&n={i}"))
        wait_until(lambda: self.in_flight(lb) == 6, 10, what="6 requests in flight")
        # An idle keep-alive connection too: it is closed at once by the drain.
        idle = HttpConn(lb.port, timeout=15)
        self.addCleanup(idle.close)
        self.assertWhoami(idle.get("/quick"), "slow")
        t0 = time.monotonic()
        lb.proc.send_signal(sig)
        self.assertTrue(idle.wait_closed(5), "an idle keep-alive connection stayed open in drain")
        # New connections are refused while the old ones finish.
        def refused():
            try:
                socket.create_connection(("127.0.0.1", lb.port), timeout=2).close()
                return False
            except ConnectionRefusedError:
                return True
        wait_until(refused, 5, what="the listener to refuse new connections")
        for i, c in enumerate(conns):
            r = c.read_response()
            self.assertWhoami(r, "slow")
            self.assertIn(f"n={i}", r.text)
            self.assertEqual((r.header("Connection") or "").lower(), "close")
            self.assertTrue(c.wait_closed(5))
        code = lb.proc.wait(15)
        took = time.monotonic() - t0
        self.assertEqual(code, 0, lb.proc.stderr()[-3000:])
        self.assertLess(took, 10)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", lb.port), timeout=2).close()
        self.assertNotIn("ERROR", lb.proc.stderr())
        self.assertNotIn("Sanitizer", lb.proc.stderr())

    def test_sigterm_drains(self):
        self.run_drain(signal.SIGTERM)

    def test_sigint_drains(self):
        self.run_drain(signal.SIGINT)

    def test_idle_process_exits_at_once(self):
        lb = self.start()
        with HttpConn(lb.port) as c:
            self.assertWhoami(c.get("/"), "slow")
            lb.proc.send_signal(signal.SIGTERM)
            self.assertTrue(c.wait_closed(5))
        self.assertEqual(lb.proc.wait(10), 0, lb.proc.stderr()[-3000:])

    def test_drain_timeout_bounds_exit(self):
        lb = self.start(drain="1s")
        c = HttpConn(lb.port, timeout=15)
        self.addCleanup(c.close)
        c.send(build_request("GET", "/?delay=20s"))
        wait_until(lambda: self.in_flight(lb) == 1, 10, what="the request in flight")
        t0 = time.monotonic()
        lb.proc.send_signal(signal.SIGTERM)
        code = lb.proc.wait(15)
        self.assertIsNotNone(code, "weir still running long after its drain timeout")
        self.assertLess(time.monotonic() - t0, 10)
        # The cut request does not look complete.
        self.assertTrue(c.wait_closed(5))


if __name__ == "__main__":
    unittest.main()
