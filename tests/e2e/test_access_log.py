"""Access logs (proxy.md): JSON (every field, in order) and combined formats, top-level and per
listener, termination causes, HTTP/1.1, HTTP/2 and tcp lines, escaping of client-controlled text
(a forged line stays one escaped line), SIGUSR1 reopen after a rotation, and the counters."""

import json
import os
import signal
import socket
import time
import unittest

from tlstest import H2Conn
from weirtest import HttpConn, WeirTestCase, free_port, wait_until

FIELDS = ["time", "listener", "client", "method", "host", "path", "proto", "status", "bytes_in",
          "bytes_out", "duration_ms", "backend", "server", "upstream_ms", "retries", "request_id",
          "tls", "termination"]


class AccessLogTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.app = self.start_whoami("app")
        self.json_path = os.path.join(self.env.tmp, "access.log")
        self.combined_path = os.path.join(self.env.tmp, "combined.log")
        self.port, self.cport, self.tport = free_port(), free_port(), free_port()
        self.admin = free_port()
        self.lb = self.start_weir({
            "workers": 2, "admin": {"listen": f"127.0.0.1:{self.admin}"},
            "access_log": {"path": self.json_path},
            "listeners": [
                {"name": "web", "listen": f"127.0.0.1:{self.port}", "h2c": True,
                 "request_id": "X-Request-ID",
                 "routes": [
                     {"match": {"path": "/ping"}, "respond": {"status": 200, "body": "pong"}},
                     {"match": {"path_prefix": "/dead"}, "backend": "dead"},
                     {"match": {"path_prefix": "/private"}, "access": {"allow": ["10.0.0.0/8"]},
                      "backend": "app"},
                     {"match": {"path_prefix": "/"}, "backend": "app"}]},
                {"name": "old", "listen": f"127.0.0.1:{self.cport}", "backend": "app",
                 "access_log": {"path": self.combined_path, "format": "combined"}},
                {"name": "db", "listen": f"127.0.0.1:{self.tport}", "mode": "tcp", "backend": "app"}],
            "backends": [
                {"name": "app", "servers": [{"name": "app-1", "address": self.app.address}]},
                {"name": "dead", "retries": 1,
                 "servers": [{"name": "gone", "address": f"127.0.0.1:{free_port()}"}]}]})

    def lines(self, path, count):
        def enough():
            if not os.path.exists(path):
                return False
            with open(path, "rb") as f:
                return f.read().count(b"\n") >= count
        wait_until(enough, timeout=5, what=f"{count} lines in {path}")
        with open(path, "rb") as f:
            return f.read().decode("utf-8").splitlines()

    def records(self, count):
        out = []
        for line in self.lines(self.json_path, count):
            rec = json.loads(line)
            self.assertEqual(list(rec.keys()), FIELDS, line)
            out.append(rec)
        return out

    def test_json_fields(self):
        with HttpConn(self.port) as c:
            r = c.request("GET", "/hello?x=1", {"User-Agent": "t/1"}, None, "example.test")
            self.assertEqual(r.status, 200)
            c.request("GET", "/ping", None, None, "example.test")
            c.request("POST", "/up", None, b"x" * 5000, "example.test")
        rid = r.header("x-request-id")
        recs = self.records(3)
        by_path = {x["path"]: x for x in recs}
        a = by_path["/hello?x=1"]
        self.assertRegex(a["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual((a["listener"], a["method"], a["host"], a["proto"], a["status"]),
                         ("web", "GET", "example.test", "HTTP/1.1", 200))
        self.assertRegex(a["client"], r"^127\.0\.0\.1:\d+$")
        self.assertEqual((a["backend"], a["server"], a["retries"], a["tls"], a["termination"]),
                         ("app", "app-1", 0, None, "ok"))
        self.assertEqual(a["request_id"], rid)
        self.assertGreater(a["bytes_in"], 40)
        self.assertGreater(a["bytes_out"], len(r.body))
        self.assertGreaterEqual(a["duration_ms"], a["upstream_ms"])
        self.assertGreaterEqual(a["upstream_ms"], 0)
        p = by_path["/ping"]
        self.assertEqual((p["status"], p["termination"], p["backend"], p["server"], p["upstream_ms"]),
                         (200, "local", None, None, None))
        self.assertGreater(by_path["/up"]["bytes_in"], 5000)

    def test_terminations(self):
        with HttpConn(self.port) as c:
            self.assertEqual(c.request("GET", "/dead", None, None, "x").status, 502)
            self.assertEqual(c.request("GET", "/private", None, None, "x").status, 403)
        with HttpConn(self.port) as c:
            c.send(b"GET /bad HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            self.assertEqual(c.read_response().status, 400)
        # A client that goes away while its answer is awaited.
        with HttpConn(self.port) as c:
            c.send(b"GET /slow?delay=2s HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        recs = self.records(4)
        got = {(x["path"], x["status"], x["termination"]) for x in recs}
        self.assertIn(("/dead", 502, "upstream_refused"), got)
        self.assertIn(("/private", 403, "denied"), got)
        self.assertIn(("", 400, "bad_request"), got)
        self.assertIn(("/slow?delay=2s", 0, "client_closed"), got)
        dead = next(x for x in recs if x["path"] == "/dead")
        self.assertEqual((dead["server"], dead["retries"]), ("gone", 0))

    def test_http2_and_tcp_lines(self):
        h2 = H2Conn(self.port)
        self.addCleanup(h2.close)
        self.assertEqual(h2.get("/two").status, 200)
        with socket.create_connection(("127.0.0.1", self.tport), timeout=5) as s:
            s.sendall(b"GET /via-tcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        recs = self.records(2)
        two = next(x for x in recs if x["path"] == "/two")
        self.assertEqual(two["proto"], "HTTP/2")
        tcp = next(x for x in recs if x["proto"] == "tcp")
        self.assertEqual((tcp["listener"], tcp["backend"], tcp["server"], tcp["status"]),
                         ("db", "app", "app-1", 0))
        self.assertEqual(tcp["bytes_out"], len(got))
        self.assertGreater(tcp["bytes_in"], 40)

    def test_forged_lines_stay_one_line(self):
        ua = 'evil"\\ \t\x80\xff "} {"status": 200'
        with HttpConn(self.cport) as c:
            c.send(b"GET /x HTTP/1.1\r\nHost: h\r\nUser-Agent: " + ua.encode("latin-1") + b"\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
        with HttpConn(self.port) as c:
            c.send(b"GET /a%22b%5C?q=%0A HTTP/1.1\r\nHost: x\r\nUser-Agent: " + ua.encode("latin-1") + b"\r\n\r\n")
            c.read_response()
        line = self.lines(self.combined_path, 1)[0]
        self.assertRegex(line, r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                               r'"GET /x HTTP/1\.1" 200 \d+ "-" "evil\\x22\\x5C \\x09\\x80\\xFF \\x22} {\\x22status\\x22: 200"$')
        rec = self.records(1)[0]
        self.assertEqual(rec["path"], "/a%22b%5C?q=%0A")

    def test_sigusr1_reopens(self):
        with HttpConn(self.port) as c:
            c.request("GET", "/before", None, None, "x")
        self.records(1)
        os.rename(self.json_path, self.json_path + ".1")
        self.lb.proc.send_signal(signal.SIGUSR1)
        self.lb.proc.wait_log("SIGUSR1")
        time.sleep(0.3)
        with HttpConn(self.port) as c:
            c.request("GET", "/after", None, None, "x")
        recs = self.records(1)
        self.assertEqual([x["path"] for x in recs], ["/after"])
        with open(self.json_path + ".1") as f:
            self.assertIn("/before", f.read())
        m = self.lb.metrics()
        self.assertGreaterEqual(m.get("weir_access_log_lines_total"), 2)
        self.assertEqual(m.get("weir_access_log_dropped_total"), 0)


if __name__ == "__main__":
    unittest.main()
