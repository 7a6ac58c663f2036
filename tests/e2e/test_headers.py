"""Forwarded headers: hop-by-hop removal and X-Forwarded-* replacement (hardening baseline)."""

import unittest

from weirtest import Env, WeirTestCase, http_get, lb_config, free_port

SPOOF = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Host", "evil.test"),
         ("X-Forwarded-Proto", "https")]


class HeadersTest(WeirTestCase):
    @classmethod
    def setUpClass(cls):
        env = Env(cls.addClassCleanup)
        cls.w = env.start_whoami("hdr")
        cls.lb = env.start_lb([cls.w.port])
        cls.trusting = env.start_weir(lb_config(free_port(), [cls.w.port],
                                                listener_extra={"trusted_proxies": ["127.0.0.1"]}),
                                      filename="trusting.yaml")

    def seen(self, port, headers, host="site.test"):
        r = http_get(port, "/h", headers=headers, host=host)
        self.assertWhoami(r, "hdr")
        return [l for l in r.text.splitlines()[5:] if ": " in l]

    def test_hop_by_hop_removed(self):
        lines = self.seen(self.lb.port, [
            ("Connection", "X-Secret, Keep-Alive"), ("X-Secret", "s"), ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"), ("Proxy-Connection", "keep-alive"), ("X-Kept", "yes")])
        names = {l.split(":", 1)[0].lower() for l in lines}
        for gone in ("x-secret", "keep-alive", "te", "proxy-connection"):
            self.assertNotIn(gone, names, lines)
        self.assertIn("X-Kept: yes", lines)

    def test_forwarded_headers_replaced(self):
        lines = self.seen(self.lb.port, SPOOF)
        self.assertIn("X-Forwarded-For: 127.0.0.1", lines)
        self.assertIn("X-Forwarded-Host: site.test", lines)
        self.assertIn("X-Forwarded-Proto: http", lines)
        self.assertNotIn("6.6.6.6", "\n".join(lines))
        self.assertNotIn("evil.test", "\n".join(lines))
        self.assertEqual(sum(l.lower().startswith("x-forwarded-for:") for l in lines), 1, lines)

    def test_forwarded_headers_added_when_absent(self):
        lines = self.seen(self.lb.port, [])
        self.assertIn("X-Forwarded-For: 127.0.0.1", lines)
        self.assertIn("Host: site.test", lines)

    def test_trusted_proxy_keeps_client_chain(self):
        lines = self.seen(self.trusting.port, SPOOF)
        xff = [l for l in lines if l.lower().startswith("x-forwarded-for:")]
        self.assertEqual(len(xff), 1, lines)
        self.assertIn("6.6.6.6", xff[0])

    def test_end_to_end_headers_kept_in_order(self):
        lines = self.seen(self.lb.port, [("X-A", "1"), ("X-B", "2"), ("X-A", "3"),
                                         ("Cookie", "a=b"), ("Authorization", "Bearer t")])
        xs = [l for l in lines if l.startswith(("X-A", "X-B"))]
        self.assertEqual(xs, ["X-A: 1", "X-B: 2", "X-A: 3"])
        self.assertIn("Cookie: a=b", lines)
        self.assertIn("Authorization: Bearer t", lines)


if __name__ == "__main__":
    unittest.main()
