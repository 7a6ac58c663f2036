"""Overload protection: per-server concurrency limit with a FIFO queue (503 beyond it, 503 after
queue_timeout), slowloris connections cut at the header timeout while others are served, and a
listener's max_connections."""

import resource
import select
import socket
import threading
import time
import unittest

from weirtest import (BufferWatch, HttpConn, WeirTestCase, build_request, buffers, degrade, http_get,
                      wait_until)


class QueueTest(WeirTestCase):
    def test_limit_queue_and_503_beyond(self):
        w = self.start_whoami("only")
        lb = self.start_lb([{"address": w.address, "name": "only"}],
                           backend_extra={"limits": {"max_active_per_server": 1, "queue_size": 2,
                                                     "queue_timeout": "20s"}})
        delay = 1.2
        conns = []
        done = {}
        lock = threading.Lock()

        def reader(i, c):
            r = c.read_response()
            with lock:
                done[i] = (time.monotonic(), r)

        # r0 runs; r1 and r2 wait, in this order.
        threads = []
        for i in range(3):
            c = HttpConn(lb.port, timeout=20)
            self.addCleanup(c.close)
            c.send(build_request("GET", f"/r{i}?delay={int(delay * 1000)}ms"))
            conns.append(c)
            if i == 0:
                wait_until(lambda: lb.server("web", "only")["active_requests"] == 1, 5, what="r0 running")
            else:
                # Queued before the next one arrives (FIFO order is the point).
                wait_until(lambda: self.queued(lb) == i, 5, what=f"r{i} queued")
            t = threading.Thread(target=reader, args=(i, c), daemon=True)
            t.start()
            threads.append(t)
        self.assertEqual(lb.server("web", "only")["active_requests"], 1)
        self.assertEqual(self.queued(lb), 2)
        self.assertEqual(lb.metrics().get("weir_backend_queued_requests", backend="web"), 2)
        # The queue is full: the rest get 503 at once, long before r0 finishes.
        t_start = time.monotonic()
        for i in range(3, 6):
            t0 = time.monotonic()
            r = http_get(lb.port, f"/over{i}", timeout=10)
            self.assertEqual(r.status, 503, r)
            self.assertIsNotNone(r.header("Retry-After"), r.headers)
            self.assertLess(time.monotonic() - t0, delay * 0.8, "the over-queue 503 was not at once")
        self.assertLess(time.monotonic() - t_start, delay)
        for t in threads:
            t.join(15)
        self.assertEqual(sorted(done), [0, 1, 2])
        for i in range(3):
            r = done[i][1]
            self.assertWhoami(r, "only")
            self.assertIn(f"GET /r{i}?", r.text)
        # FIFO and one at a time: each finishes about `delay` after the previous one.
        self.assertLess(done[0][0], done[1][0])
        self.assertLess(done[1][0], done[2][0])
        self.assertGreater(done[1][0] - done[0][0], delay * 0.7)
        self.assertGreater(done[2][0] - done[1][0], delay * 0.7)
        self.assertEqual(lb.server("web", "only")["requests_total"], 3)
        self.assertEqual(lb.metrics().get("weir_requests_total", backend="web", code="503"), 3)
        # Idle again: served at once.
        self.assertWhoami(http_get(lb.port, "/after"), "only")

    def test_queue_is_per_server_limit_not_global(self):
        a = self.start_whoami("a")
        b = self.start_whoami("b")
        lb = self.start_lb([{"address": a.address, "name": "a"}, {"address": b.address, "name": "b"}],
                           backend_extra={"balance": "least_connections",
                                          "limits": {"max_active_per_server": 1, "queue_size": 0}})

        def active():
            return sum(s["active_requests"] for s in lb.backends()["backends"][0]["servers"])

        conns = []
        for i in range(2):
            c = HttpConn(lb.port, timeout=10)
            self.addCleanup(c.close)
            c.send(build_request("GET", f"/c{i}?delay=1s"))
            conns.append(c)
            # The second arrives while the first is in flight on one server.
            wait_until(lambda: active() == i + 1, 5, what=f"{i + 1} requests in flight")
        results = [(r.status, r.whoami_name()) for r in (c.read_response() for c in conns)]
        # Two servers, one slot each: both run at the same time, neither queued (queue_size 0).
        self.assertEqual(sorted(results), [(200, "a"), (200, "b")])

    def test_queue_timeout_503(self):
        w = self.start_whoami("only")
        lb = self.start_lb([{"address": w.address, "name": "only"}],
                           backend_extra={"limits": {"max_active_per_server": 1, "queue_size": 5,
                                                     "queue_timeout": "500ms"}})
        busy = HttpConn(lb.port, timeout=15)
        self.addCleanup(busy.close)
        busy.send(build_request("GET", "/busy?delay=3s"))
        wait_until(lambda: lb.server("web", "only")["active_requests"] == 1, 5, what="busy running")
        t0 = time.monotonic()
        r = http_get(lb.port, "/waits", timeout=10)
        took = time.monotonic() - t0
        self.assertEqual(r.status, 503, r)
        self.assertLess(len(r.body), 200)
        self.assertGreaterEqual(took, 0.4, "503 before the queue_timeout")
        self.assertLess(took, 2.5, "the queued request waited for the busy one instead")
        self.assertWhoami(busy.read_response(), "only")
        self.assertEqual(lb.server("web", "only")["requests_total"], 1)
        self.assertEqual(self.queued(lb), 0)

    @staticmethod
    def queued(lb) -> int:
        return next(b for b in lb.backends()["backends"] if b["name"] == "web")["queued"]


class SlowlorisTest(WeirTestCase):
    def test_slowloris_cut_while_normal_clients_served(self):
        # 2,000 slow clients need more descriptors than the usual soft limit of 1,024 (weir
        # inherits the raised limit from this process).
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 4500 and hard >= 4500:
            resource.setrlimit(resource.RLIMIT_NOFILE, (4500, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        n = 2000
        if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 4500:
            # A lowered file limit: locally 400 slow clients instead, under CI a failure.
            degrade(f"RLIMIT_NOFILE hard limit {hard} < 4500: 2,000 slow clients need more descriptors")
            n = 400
        w = self.start_whoami("fine")
        lb = self.start_lb([{"address": w.address, "name": "fine"}],
                           listener_extra={"timeouts": {"header": "2s"}})
        head = b"GET / HTTP/1.1\r\nHost: slow.test\r\nX-Slowloris: " + b"a" * 64
        slow = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", lb.port), timeout=5)
            s.sendall(head[:1])
            slow.append(s)
        self.addCleanup(lambda: [s.close() for s in slow])
        t_open = time.monotonic()
        # Design (docs/ARCHITECTURE.md, memory): a client connection holds its two buffers' blocks
        # (in and out) while a request head is arriving, and one exchange adds its server
        # connection's in and out blocks, so n slow heads plus the one normal request at a time
        # hold at most 2n + 4 blocks of max(buffer_size, max_header_bytes) = 16 KiB: 2,000
        # slowloris clients cost weir at most ~64 MiB of buffers, however long they trickle.
        watch = BufferWatch(lb.admin_port, interval=0.05)
        self.addCleanup(watch.close)
        open_socks = {s.fileno(): s for s in slow}
        closed_at = {}
        errors = []
        stop = threading.Event()

        def trickle():
            # One byte a second to every connection still open; note when weir closes them.
            sent = 1
            next_send = time.monotonic() + 1
            poller = select.poll()
            for fd in open_socks:
                poller.register(fd, select.POLLIN)
            while open_socks and not stop.is_set() and time.monotonic() - t_open < 10:
                ready = [open_socks[fd] for fd, _ in poller.poll(100) if fd in open_socks]
                for s in ready:
                    poller.unregister(s.fileno())
                    try:
                        data = s.recv(4096)
                    except OSError:
                        data = b""
                    if data and not data.startswith(b"HTTP/1.1 408"):
                        errors.append(data[:80])
                    # EOF, a reset or a 408 (then the close): either way it was cut.
                    closed_at[s.fileno()] = time.monotonic() - t_open
                    del open_socks[s.fileno()]
                if time.monotonic() >= next_send and sent < len(head):
                    for s in list(open_socks.values()):
                        try:
                            s.send(head[sent:sent + 1])
                        except OSError:
                            pass
                    sent += 1
                    next_send += 1

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        served = 0
        try:
            while t.is_alive() and time.monotonic() - t_open < 10:
                t0 = time.monotonic()
                r = http_get(lb.port, f"/normal{served}", timeout=5)
                self.assertWhoami(r, "fine")
                self.assertLess(time.monotonic() - t0, 2.0, "a normal request stalled during the slowloris")
                served += 1
                time.sleep(0.1)  # the normal client's pace over the 10 s window (not an ordering)
        finally:
            stop.set()
            t.join(5)
        peak = watch.stop()
        print(f"\nslowloris: {len(closed_at)}/{n} cut, latest at {max(closed_at.values(), default=0):.1f}s; "
              f"{served} normal requests served; at most {peak} buffer blocks of {watch.block_bytes} B held")
        self.assertLessEqual(peak, 2 * n + 4, "buffer blocks held by the slow connections")
        self.assertEqual(errors, [])
        self.assertEqual(len(closed_at), n, f"{n - len(closed_at)} slow connections still open after 10 s")
        self.assertGreaterEqual(min(closed_at.values()), 1.0, "cut before the header timeout")
        self.assertLess(max(closed_at.values()), 8.0)
        self.assertGreaterEqual(served, 10)
        self.assertEqual(lb.server("web", "fine")["requests_total"], served)
        # Every slow connection cut: their blocks are back (nothing else is open).
        wait_until(lambda: buffers(lb.admin_port)["in_use"] == 0, 5, what="every buffer block back")


class MaxConnectionsTest(WeirTestCase):
    def test_connections_beyond_the_limit_wait(self):
        w = self.start_whoami("mc")
        lb = self.start_lb([{"address": w.address, "name": "mc"}], listener_extra={"max_connections": 2})
        c1 = HttpConn(lb.port, timeout=10)
        c2 = HttpConn(lb.port, timeout=10)
        self.addCleanup(c1.close)
        self.addCleanup(c2.close)
        self.assertWhoami(c1.get("/1"), "mc")
        self.assertWhoami(c2.get("/2"), "mc")
        # A third connection completes its TCP handshake in the kernel but is not served.
        c3 = HttpConn(lb.port, timeout=10)
        self.addCleanup(c3.close)
        c3.send(build_request("GET", "/3"))
        c3.settimeout(1.0)
        with self.assertRaises(socket.timeout):
            c3.read_response()
        # The first two still work.
        self.assertWhoami(c1.get("/1b"), "mc")
        # One closes: the waiting one is accepted and answered.
        c1.close()
        c3.settimeout(5.0)
        self.assertWhoami(c3.read_response(), "mc")
        self.assertEqual(lb.server("web", "mc")["requests_total"], 4)


if __name__ == "__main__":
    unittest.main()
