"""Sticky sessions: the cookie weir sets (exact attributes, opaque token), sticking while the
server is up, forged cookies ignored, re-sticking when the server goes down, a shared
secret_file across processes, max_age."""

import os
import re
import unittest

from weirtest import (HttpConn, WeirTestCase, free_port, http_get, lb_config, set_whoami_health,
                      wait_until)

COOKIE = "weir_srv"
SET_COOKIE = re.compile(r"^weir_srv=([0-9a-f]{32}); Path=/; HttpOnly; SameSite=Lax$")


class StickyTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.a = self.start_whoami("a")
        self.b = self.start_whoami("b")

    def sticky_lb(self, sticky=None, extra=None, port=None):
        be = {"balance": "round_robin", "sticky": sticky or {"cookie": COOKIE}}
        be.update(extra or {})
        cfg = lb_config(port or free_port(), [{"address": self.a.address, "name": "a"},
                                              {"address": self.b.address, "name": "b"}],
                        admin_port=free_port(), backend_extra=be)
        listen_port = cfg["listeners"][0]["listen"].rsplit(":", 1)[1]
        return self.start_weir(cfg, filename=f"weir-{listen_port}.yaml")

    def token_of(self, r, rx=SET_COOKIE):
        values = r.header_all("Set-Cookie")
        self.assertEqual(len(values), 1, r.headers)
        m = rx.match(values[0])
        self.assertIsNotNone(m, f"unexpected Set-Cookie {values[0]!r}")
        return m.group(1)

    def tokens_by_server(self, port, n=4):
        """{server name: token} from n cookie-less requests (round robin visits both)."""
        out = {}
        for _ in range(n):
            r = http_get(port, "/")
            self.assertWhoami(r)
            tok = self.token_of(r)
            name = r.whoami_name()
            if name in out:
                self.assertEqual(out[name], tok, "a server's token changed within one process")
            out[name] = tok
        return out

    def test_first_response_sets_cookie_exactly(self):
        lb = self.sticky_lb()
        r = http_get(lb.port, "/")
        self.assertWhoami(r)
        header = r.header("Set-Cookie")
        tok = self.token_of(r)
        # Opaque: neither the server's name, address nor port appears in it.
        for secret in ("127.0.0.1", str(self.a.port), str(self.b.port), self.a.address, self.b.address):
            self.assertNotIn(secret, header)
        self.assertNotIn(f"{COOKIE}={r.whoami_name()};", header)
        # Two servers, two different tokens.
        tokens = self.tokens_by_server(lb.port)
        self.assertEqual(set(tokens), {"a", "b"})
        self.assertNotEqual(tokens["a"], tokens["b"])
        self.assertIn(tok, tokens.values())

    def test_cookie_sticks_while_round_robin_would_alternate(self):
        lb = self.sticky_lb()
        # Without the cookie: plain round robin.
        with HttpConn(lb.port) as c:
            seq = [c.get("/").whoami_name() for _ in range(6)]
        self.assertEqual(set(seq[0::2]) | set(seq[1::2]), {"a", "b"})
        self.assertNotEqual(seq[0], seq[1])
        r = http_get(lb.port, "/")
        stuck, tok = r.whoami_name(), self.token_of(r)
        with HttpConn(lb.port) as c:
            for i in range(50):
                r = c.get(f"/s{i}", headers={"Cookie": f"other=1; {COOKIE}={tok}; x=y"})
                self.assertWhoami(r, stuck)
                # A valid cookie is not set again.
                self.assertEqual(r.header_all("Set-Cookie"), [], r.headers)
        # Also across new connections.
        for i in range(5):
            self.assertWhoami(http_get(lb.port, "/n", headers={"Cookie": f"{COOKIE}={tok}"}), stuck)
        other = "b" if stuck == "a" else "a"
        self.assertGreaterEqual(lb.server("web", stuck)["requests_total"], 55)
        self.assertLessEqual(lb.server("web", other)["requests_total"], 6)

    def test_forged_cookie_ignored_and_replaced(self):
        lb = self.sticky_lb()
        tokens = self.tokens_by_server(lb.port)
        valid = set(tokens.values())
        tampered = tokens["a"][:-1] + ("0" if tokens["a"][-1] != "0" else "1")
        forged = ["0" * 32, "f" * 32, tampered, tokens["a"].upper(), "hello", "", tokens["a"] + "00",
                  "127.0.0.1:" + str(self.a.port), "a"]
        with HttpConn(lb.port) as c:
            for value in forged:
                r = c.get("/f", headers={"Cookie": f"{COOKIE}={value}"})
                self.assertWhoami(r)
                tok = self.token_of(r)
                self.assertIn(tok, valid, f"forged {value!r} got a token that is no server's")
                self.assertEqual(tok, tokens[r.whoami_name()])
        # Forged cookies do not pin: they are balanced (round robin keeps alternating).
        names = [http_get(lb.port, "/", headers={"Cookie": f"{COOKIE}={'0' * 32}"}).whoami_name()
                 for _ in range(6)]
        self.assertEqual(set(names), {"a", "b"})

    def test_server_down_rebalances_and_resticks(self):
        lb = self.sticky_lb(extra={"health_check": {"interval": "200ms", "timeout": "200ms",
                                                    "rise": 1, "fall": 1}})
        tokens = self.tokens_by_server(lb.port)
        r = http_get(lb.port, "/", headers={"Cookie": f"{COOKIE}={tokens['b']}"})
        self.assertWhoami(r, "b")
        set_whoami_health(self.b, 503)
        lb.proc.wait_log(r"server web/b DOWN", timeout=10)
        wait_until(lambda: lb.server("web", "b")["healthy"] is False, 5, what="b unhealthy in the API")
        with HttpConn(lb.port) as c:
            for _ in range(5):
                r = c.get("/", headers={"Cookie": f"{COOKIE}={tokens['b']}"})
                self.assertWhoami(r, "a")
                self.assertEqual(self.token_of(r), tokens["a"])
        # The new cookie sticks to a.
        for _ in range(5):
            self.assertWhoami(http_get(lb.port, "/", headers={"Cookie": f"{COOKIE}={tokens['a']}"}), "a")
        # b comes back: its old cookie works again.
        set_whoami_health(self.b, 200)
        lb.proc.wait_log(r"server web/b UP", timeout=10)
        wait_until(lambda: lb.server("web", "b")["healthy"] is True, 5, what="b healthy in the API")
        r = http_get(lb.port, "/", headers={"Cookie": f"{COOKIE}={tokens['b']}"})
        self.assertWhoami(r, "b")
        self.assertEqual(r.header_all("Set-Cookie"), [])

    def test_server_killed_rebalances_and_resticks(self):
        lb = self.sticky_lb(extra={"retries": 1,
                                   "health_check": {"type": "tcp", "interval": "200ms",
                                                    "timeout": "200ms", "rise": 1, "fall": 1}})
        tokens = self.tokens_by_server(lb.port)
        self.a.proc.stop()
        # Right away (before or after the check notices) the request is served by b, re-stuck.
        for _ in range(3):
            r = http_get(lb.port, "/", headers={"Cookie": f"{COOKIE}={tokens['a']}"})
            self.assertWhoami(r, "b")
            self.assertEqual(self.token_of(r), tokens["b"])
        wait_until(lambda: lb.server("web", "a")["healthy"] is False, 10, what="a marked down")
        r = http_get(lb.port, "/", headers={"Cookie": f"{COOKIE}={tokens['a']}"})
        self.assertWhoami(r, "b")
        self.assertEqual(self.token_of(r), tokens["b"])

    def test_secret_file_shared_by_two_processes(self):
        secret = os.path.join(self.tmp, "sticky.key")
        with open(secret, "w") as f:
            f.write("0123456789abcdef-a-shared-secret\n")
        lb1 = self.sticky_lb({"cookie": COOKIE, "secret_file": secret})
        lb2 = self.sticky_lb({"cookie": COOKIE, "secret_file": secret})
        t1 = self.tokens_by_server(lb1.port)
        t2 = self.tokens_by_server(lb2.port)
        self.assertEqual(set(t1), {"a", "b"})
        self.assertEqual(t1, t2)
        # A cookie from one process sticks on the other.
        for name in ("a", "b"):
            for _ in range(3):
                r = http_get(lb2.port, "/", headers={"Cookie": f"{COOKIE}={t1[name]}"})
                self.assertWhoami(r, name)
                self.assertEqual(r.header_all("Set-Cookie"), [])

    def test_without_secret_file_processes_differ(self):
        lb1 = self.sticky_lb()
        lb2 = self.sticky_lb()
        t1 = self.tokens_by_server(lb1.port)
        t2 = self.tokens_by_server(lb2.port)
        self.assertNotEqual(t1["a"], t2["a"])
        self.assertNotEqual(t1["b"], t2["b"])
        # lb2 does not accept lb1's cookie: it sets its own.
        r = http_get(lb2.port, "/", headers={"Cookie": f"{COOKIE}={t1['a']}"})
        self.assertWhoami(r)
        self.assertIn(self.token_of(r), t2.values())

    def test_secret_file_too_short_is_a_config_error(self):
        secret = os.path.join(self.tmp, "short.key")
        with open(secret, "w") as f:
            f.write("short\n")
        cfg = lb_config(free_port(), [self.a.port], backend_extra={
            "sticky": {"cookie": COOKIE, "secret_file": secret}})
        path = self.write_config(cfg, "short.yaml")
        res = self.run_weir("check", "-c", path)
        self.assertEqual(res.returncode, 1, res)
        self.assertIn(b"secret_file", res.stdout + res.stderr)

    def test_max_age(self):
        lb = self.sticky_lb({"cookie": COOKIE, "max_age": "1h"})
        r = http_get(lb.port, "/")
        self.assertWhoami(r)
        rx = re.compile(r"^weir_srv=([0-9a-f]{32}); Path=/; HttpOnly; SameSite=Lax; Max-Age=3600$")
        self.token_of(r, rx)

    def test_other_cookie_name(self):
        lb = self.sticky_lb({"cookie": "SRVID"})
        r = http_get(lb.port, "/", headers={"Cookie": f"{COOKIE}={'0' * 32}"})
        tok = self.token_of(r, re.compile(r"^SRVID=([0-9a-f]{32}); Path=/; HttpOnly; SameSite=Lax$"))
        stuck = r.whoami_name()
        for _ in range(6):
            self.assertWhoami(http_get(lb.port, "/", headers={"Cookie": f"SRVID={tok}"}), stuck)


if __name__ == "__main__":
    unittest.main()
