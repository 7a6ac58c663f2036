"""Route header rules (request_headers / response_headers: remove, set, add), the filter seams'
worked example: edits reach the server and the client over HTTP/1.1 and HTTP/2, only on the
route that has them, and weir's own answers go through the same response filters."""

import unittest

from tlstest import curl
from weirtest import (Env, ScriptedServer, WeirTestCase, free_port, http_get, lb_config,
                      read_request_head)

ORIGIN_BODY = b"origin"


def origin_handler(c):
    """An origin that sends headers a route may want to hide or change."""
    while True:
        head = read_request_head(c)
        if not head:
            return
        c.sendall(b"HTTP/1.1 200 OK\r\nServer: origin/1.0\r\nX-Internal: secret\r\n"
                  b"Cache-Control: public, max-age=60\r\nX-Kept: yes\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(ORIGIN_BODY), ORIGIN_BODY))


class HeaderRulesTest(WeirTestCase):
    @classmethod
    def setUpClass(cls):
        env = Env(cls.addClassCleanup)
        cls.who = env.start_whoami("who")
        cls.origin = ScriptedServer(origin_handler)
        cls.addClassCleanup(cls.origin.stop)
        routes = [
            {"match": {"path_prefix": "/api/"}, "backend": "who",
             "request_headers": {"remove": ["X-Debug"], "set": {"X-Env": "prod"},
                                 "add": {"Via": "1.1 weir"}}},
            {"match": {"path_prefix": "/site/"}, "backend": "origin",
             "response_headers": {"remove": ["X-Internal"], "set": {"Cache-Control": "no-store"},
                                  "add": {"X-Served-By": "weir"}}},
            {"match": {"path_prefix": "/plain/"}, "backend": "origin"},
        ]
        backends = [
            {"name": "who", "servers": [{"address": f"127.0.0.1:{cls.who.port}"}]},
            {"name": "origin", "servers": [{"address": cls.origin.address}]},
        ]
        cls.port = free_port()
        cls.lb = env.start_weir(lb_config(cls.port, [], routes=routes, backends=backends,
                                          listener_extra={"h2c": True}))

    def test_request_headers_reach_the_server_edited(self):
        r = http_get(self.port, "/api/x", headers=[("X-Debug", "1"), ("X-Env", "dev"),
                                                   ("X-Env", "test"), ("Via", "1.1 client")])
        self.assertWhoami(r, "who")
        lines = r.text.splitlines()
        self.assertNotIn("X-Debug: 1", lines)
        self.assertIn("X-Env: prod", lines)
        self.assertNotIn("X-Env: dev", lines)
        self.assertNotIn("X-Env: test", lines)
        # add appends: the client's Via stays, weir's comes after it.
        self.assertLess(lines.index("Via: 1.1 client"), lines.index("Via: 1.1 weir"))

    def test_response_headers_reach_the_client_edited(self):
        r = http_get(self.port, "/site/page")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, ORIGIN_BODY)
        self.assertIsNone(r.header("X-Internal"))
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertEqual(r.header("X-Served-By"), "weir")
        self.assertEqual(r.header("X-Kept"), "yes")
        self.assertEqual(len([h for h in r.headers if h[0].lower() == "cache-control"]), 1)

    def test_rules_apply_only_to_their_route(self):
        r = http_get(self.port, "/plain/page")
        self.assertEqual(r.header("X-Internal"), "secret")
        self.assertEqual(r.header("Cache-Control"), "public, max-age=60")
        self.assertIsNone(r.header("X-Served-By"))

    def test_response_headers_over_http2(self):
        r = curl(f"http://127.0.0.1:{self.port}/site/h2", "--http2-prior-knowledge")
        self.assertEqual((r.rc, r.code, r.version), (0, 200, "2"), r.describe())
        names = {k.lower(): v for k, v in r.headers}
        self.assertNotIn("x-internal", names)
        self.assertEqual(names.get("cache-control"), "no-store")
        self.assertEqual(names.get("x-served-by"), "weir")
        self.assertEqual(r.body, ORIGIN_BODY)

    def test_request_headers_over_http2(self):
        r = curl(f"http://127.0.0.1:{self.port}/api/h2", "--http2-prior-knowledge",
                 "-H", "X-Debug: 1", "-H", "X-Env: dev")
        self.assertEqual((r.rc, r.code, r.version), (0, 200, "2"), r.describe())
        text = r.body.decode()
        self.assertIn("X-Env: prod", text)
        self.assertNotIn("X-Debug", text)
        self.assertIn("Via: 1.1 weir", text)

    def test_unmatched_request_gets_weirs_own_404(self):
        r = http_get(self.port, "/elsewhere")
        self.assertEqual(r.status, 404)
        self.assertIsNone(r.header("X-Served-By"))


if __name__ == "__main__":
    unittest.main()
