"""proxy.md's listener keys against real processes: `access` (allow, deny, deny_file re-read on
SIGHUP; listeners and routes; http and tcp), `client_limits` (max_connections, rate/burst by
client_ip and header), `request_id`, `error_pages`, `trusted_proxies` with CIDR ranges, the
counters in weir_refused_total, and `weir check` errors for each key at FILE:LINE:COL. Client
addresses other than 127.0.0.1 are other sources in 127.0.0.0/8 (loopback only)."""

import os
import re
import socket
import time
import unittest

from weirtest import (HttpConn, WeirTestCase, free_port, port_accepts, rss, wait_until)


def get(port, target="/", source=None, headers=None):
    with HttpConn(port, source=source) as c:
        return c.request("GET", target, headers, None, "example.test")


def closed_at_once(port, source, timeout=3.0) -> bool:
    """True if weir closes a tcp connection from `source` without a byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as s:
        try:
            return s.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


class AccessLimitsTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.app = self.start_whoami("app")
        self.admin_port = free_port()
        self.deny_file = os.path.join(self.env.tmp, "deny.txt")
        with open(self.deny_file, "w") as f:
            f.write("# bad neighbours\n127.0.0.4\n127.0.5.0/24  # a whole /24\n")
        self.page = os.path.join(self.env.tmp, "50x.html")
        with open(self.page, "w") as f:
            f.write("<h1>we are on it</h1>\n")
        self.port, self.tcp_port, self.limited, self.v6, self.keyed = (free_port() for _ in range(5))
        self.cfg = {
            "workers": 2,
            "admin": {"listen": f"127.0.0.1:{self.admin_port}"},
            "listeners": [
                {"name": "web", "listen": f"127.0.0.1:{self.port}",
                 "access": {"deny": ["127.0.0.2", "127.0.3.0/24"], "deny_file": self.deny_file},
                 "trusted_proxies": ["127.0.0.0/29"],
                 "request_id": "X-Request-ID",
                 "error_pages": {502: self.page},
                 "routes": [
                     {"match": {"path_prefix": "/private/"},
                      "access": {"allow": ["127.0.0.9", "127.0.1.0/24"]}, "backend": "app"},
                     {"match": {"path_prefix": "/dead/"}, "backend": "dead"},
                     {"match": {"path": "/own"}, "respond": {"status": 502, "body": "mine"}},
                     {"match": {"path_prefix": "/"}, "backend": "app"},
                 ]},
                {"name": "db", "listen": f"127.0.0.1:{self.tcp_port}", "mode": "tcp",
                 "access": {"allow": ["127.0.0.1"]}, "backend": "app"},
                {"name": "limited", "listen": f"127.0.0.1:{self.limited}",
                 "client_limits": {"max_connections": 2, "rate": "5/s", "burst": 5},
                 "backend": "app"},
                {"name": "keyed", "listen": f"127.0.0.1:{self.keyed}",
                 "client_limits": {"key": "header:X-Api-Key", "rate": "120/m", "burst": 3},
                 "backend": "app"},
                {"name": "v6", "listen": f"[::1]:{self.v6}",
                 "access": {"allow": ["::1/128"], "deny": ["2001:db8::/32"]}, "backend": "app"},
            ],
            "backends": [
                {"name": "app", "servers": [{"address": self.app.address}]},
                {"name": "dead", "retries": 0,
                 "servers": [{"address": f"127.0.0.1:{free_port()}"}]},
            ],
        }
        self.lb = self.start_weir(self.cfg)

    def refused(self, listener, reason):
        return self.lb.metrics().get("weir_refused_total", listener=listener, reason=reason)

    def test_listener_access_http(self):
        self.assertWhoami(get(self.port), "app")
        for source in ("127.0.0.2", "127.0.3.77", "127.0.0.4", "127.0.5.200"):
            with HttpConn(self.port, source=source) as c:
                c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                r = c.read_response()
                self.assertEqual(r.status, 403, source)
                self.assertEqual(r.header("connection"), "close")
                self.assertTrue(c.is_closed(), source)
        self.assertWhoami(get(self.port, source="127.0.0.6"), "app")
        self.assertEqual(self.refused("web", "access"), 4)
        self.assertEqual(self.app_requests(), 2)  # nothing of the refused reached the server

    def app_requests(self):
        return self.lb.metrics().get("weir_requests_total", listener="web", backend="app")

    def test_deny_file_reread_on_sighup(self):
        self.assertWhoami(get(self.port, source="127.0.0.7"), "app")
        with open(self.deny_file, "a") as f:
            f.write("127.0.0.7\n")
        self.assertWhoami(get(self.port, source="127.0.0.7"), "app")  # not before the reload
        self.lb.reload()
        self.assertEqual(get(self.port, source="127.0.0.7").status, 403)
        # A broken deny file is refused whole: the last good lists stay.
        with open(self.deny_file, "a") as f:
            f.write("not-an-address\n")
        self.lb.reload(wait=False)
        self.lb.proc.wait_log(r"deny\.txt:5", timeout=10)
        self.assertEqual(get(self.port, source="127.0.0.7").status, 403)
        self.assertWhoami(get(self.port, source="127.0.0.8"), "app")

    def test_route_access(self):
        self.assertEqual(get(self.port, "/private/x").status, 403)
        self.assertWhoami(get(self.port, "/private/x", source="127.0.0.9"), "app")
        self.assertWhoami(get(self.port, "/private/x", source="127.0.1.3"), "app")
        # A refused route leaves the connection usable.
        with HttpConn(self.port) as c:
            self.assertEqual(c.request("GET", "/private/y", None, None, "x").status, 403)
            self.assertWhoami(c.request("GET", "/public", None, None, "x"), "app")
        self.assertEqual(self.refused("web", "access"), 2)

    def test_tcp_access_closes_at_once(self):
        self.assertTrue(closed_at_once(self.tcp_port, "127.0.0.5"))
        with HttpConn(self.tcp_port) as c:
            self.assertWhoami(c.request("GET", "/", None, None, "x"), "app")
        self.assertEqual(self.refused("db", "access"), 1)

    def test_ipv6_access(self):
        with HttpConn(self.v6, host="::1") as c:
            self.assertWhoami(c.request("GET", "/", None, None, "x"), "app")
        # An IPv6 deny list: ::1 itself denied on a second weir.
        port = free_port()
        lb = self.start_weir({"workers": 1, "listeners": [
            {"name": "v6deny", "listen": f"[::1]:{port}", "access": {"deny": ["::/127"]},
             "backend": "app"}],
            "backends": [{"name": "app", "servers": [{"address": self.app.address}]}]},
            wait=False, filename="v6.yaml")
        wait_until(lambda: port_accepts(port, "::1"), what="the [::1] listener")
        with HttpConn(port, host="::1") as c:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(c.read_response().status, 403)

    def test_max_connections_per_address(self):
        a = HttpConn(self.limited, source="127.0.0.11")
        b = HttpConn(self.limited, source="127.0.0.11")
        try:
            self.assertWhoami(a.request("GET", "/", None, None, "x"), "app")
            self.assertWhoami(b.request("GET", "/", None, None, "x"), "app")
            with HttpConn(self.limited, source="127.0.0.11") as third:
                r = third.read_response()  # answered before it sends anything
                self.assertEqual(r.status, 429)
                self.assertGreaterEqual(int(r.header("retry-after")), 1)
                self.assertTrue(third.is_closed())
            # Another address is not affected.
            self.assertWhoami(get(self.limited, source="127.0.0.12"), "app")
            a.close()
            # Once one is closed, the address may connect again.
            wait_until(lambda: get(self.limited, source="127.0.0.11").status == 200, timeout=5,
                       what="a slot given back on close")
        finally:
            a.close()
            b.close()
        self.assertGreaterEqual(self.refused("limited", "connections"), 1)

    def test_rate_and_burst(self):
        with HttpConn(self.limited, source="127.0.0.21") as c:
            statuses = [c.request("GET", "/", None, None, "x").status for _ in range(8)]
            self.assertEqual(statuses[:5], [200] * 5)
            self.assertIn(429, statuses[5:])
            r = c.request("GET", "/", None, None, "x")  # the connection stays usable
            if r.status == 429:
                self.assertGreaterEqual(int(r.header("retry-after")), 1)
                self.assertFalse(c.is_closed())
            time.sleep(0.5)  # 5/s: two tokens back
            self.assertEqual(c.request("GET", "/", None, None, "x").status, 200)
        # Another address has its own bucket.
        self.assertEqual(get(self.limited, source="127.0.0.22").status, 200)
        self.assertGreaterEqual(self.refused("limited", "rate"), 1)

    def test_rate_by_header_key(self):
        def status(key, source="127.0.0.31"):
            return get(self.keyed, source=source, headers={"X-Api-Key": key} if key else None).status
        self.assertEqual([status("alice") for _ in range(4)], [200, 200, 200, 429])
        # Another key from the same address has its own bucket ...
        self.assertEqual(status("bob"), 200)
        # ... the same key from another address shares alice's (the key is the header) ...
        self.assertEqual(status("alice", source="127.0.0.32"), 429)
        # ... and leaving the header out counts under the address, not as a way around.
        self.assertEqual([status(None) for _ in range(4)], [200, 200, 200, 429])
        r = get(self.keyed, headers={"X-Api-Key": "alice"})
        self.assertEqual(r.status, 429)
        self.assertGreaterEqual(int(r.header("retry-after")), 1)  # 2/s refill: ≥ 1 s rounded up
        self.assertGreaterEqual(self.refused("keyed", "rate"), 3)

    def test_request_id(self):
        seen = set()
        for _ in range(6):
            r = get(self.port)
            rid = r.header("x-request-id")
            self.assertRegex(rid, r"^[0-9a-f]{16}-[0-9a-f]+$")
            self.assertEqual(r.whoami_field("X-Request-Id") or r.whoami_field("X-Request-ID"), rid)
            seen.add(rid)
        self.assertEqual(len(seen), 6)
        r = get(self.port, headers={"X-Request-ID": "abc-123"})
        self.assertEqual(r.header("x-request-id"), "abc-123")
        self.assertEqual(r.whoami_field("X-Request-ID"), "abc-123")
        # weir's own answers carry it too.
        self.assertIsNotNone(get(self.port, "/own").header("x-request-id"))

    def test_error_pages(self):
        r = get(self.port, "/dead/x")
        self.assertEqual(r.status, 502)
        self.assertEqual(r.text, "<h1>we are on it</h1>\n")
        self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")
        # A route's own respond is the user's body, not an error page.
        self.assertEqual(get(self.port, "/own").text, "mine")

    def test_trusted_proxies_cidr(self):
        r = get(self.port, headers={"X-Forwarded-For": "203.0.113.9"}, source="127.0.0.3")
        self.assertEqual(r.whoami_field("X-Forwarded-For"), "203.0.113.9, 127.0.0.3")
        r = get(self.port, headers={"X-Forwarded-For": "203.0.113.9"}, source="127.0.0.8")
        self.assertEqual(r.whoami_field("X-Forwarded-For"), "127.0.0.8")  # outside the /29

    def test_ten_thousand_addresses_bounded(self):
        """10,000 distinct client addresses against a 1,024-key table: served, memory flat."""
        port = free_port()
        admin = free_port()
        cfg = {"workers": 1, "admin": {"listen": f"127.0.0.1:{admin}"},
               "listeners": [{"name": "flood", "listen": f"127.0.0.1:{port}",
                              "client_limits": {"max_connections": 4, "rate": "100/s",
                                                "table_size": 1024},
                              "routes": [{"match": {"path": "/"},
                                          "respond": {"status": 200, "body": "ok"}}]}],
               "backends": [{"name": "app", "servers": [{"address": self.app.address}]}]}
        lb = self.start_weir(cfg, filename="flood.yaml")
        req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

        def burst(first, count):
            ok = 0
            for i in range(first, first + count):
                src = f"127.{1 + i // 65536}.{(i // 256) % 256}.{i % 256 or 1}"
                with socket.create_connection(("127.0.0.1", port), timeout=5,
                                              source_address=(src, 0)) as s:
                    s.sendall(req)
                    data = b""
                    while True:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                ok += data.startswith(b"HTTP/1.1 200")
            return ok

        self.assertEqual(burst(0, 2000), 2000)
        base = rss(lb.proc.pid)
        self.assertEqual(burst(2000, 8000), 8000)
        grown = rss(lb.proc.pid) - base
        self.assertLess(grown, 8 << 20, f"RSS grew by {grown} bytes over 8,000 new addresses")
        # The table stayed at its size; keys beyond it were served without a limit, counted.
        m = lb.metrics()
        self.assertEqual(m.get("weir_client_limits_table_size", listener="flood"), 1024)
        self.assertLessEqual(m.get("weir_client_limits_keys", listener="flood"), 1024)
        self.assertGreater(m.get("weir_client_limits_untracked_total", listener="flood"), 0)


class AccessConfigErrorsTest(WeirTestCase):
    def test_errors_at_their_place(self):
        missing = os.path.join(self.env.tmp, "nope.txt")
        text = f"""listeners:
  - name: web
    listen: 127.0.0.1:{free_port()}
    access: {{ allow: [10.0.0.0/8, 10.1.2.3/8], deny: ["2001:db8::/129"], deny_file: {missing} }}
    client_limits: {{ key: "header:", rate: 20/h, burst: 0 }}
    request_id: "X Request"
    error_pages: {{ 503: {missing}, 99: x.html }}
    access_log: {{ path: stdout, format: xml }}
    routes:
      - match: {{ path_prefix: / }}
        access: {{ deny: [bogus] }}
        backend: app
backends:
  - name: app
    servers: [{{ address: "127.0.0.1:1" }}]
"""
        p = self.run_weir("check", "-c", self.write_config(text))
        err = p.stderr.decode()
        self.assertNotEqual(p.returncode, 0)
        expected = [r":4:35: \"allow\": '10\.1\.2\.3/8'.*10\.0\.0\.0/8", r":4:55: \"deny\": '2001:db8::/129'",
                    r":4:85: \"deny_file\": .*nope\.txt: cannot open", r":5:27: \"key\" must be",
                    r":5:44: \"rate\" must be", r":5:57: \"burst\" must be",
                    r":6:17: \"request_id\" must be", r":7:25: \"error_pages\": cannot read",
                    r":7:58: \"error_pages\" must be an integer from 400 to 599",
                    r":8:41: \"format\" must be json or combined", r":11:26: \"deny\": 'bogus'"]
        for pattern in expected:
            self.assertRegex(err, re.escape("weir.yaml") + pattern, err)


if __name__ == "__main__":
    unittest.main()
