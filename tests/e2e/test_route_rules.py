"""Route matchers and actions of proxy.md against real processes: path (exact), path_regex (RE2),
methods, headers, cookies, query (decoded), with host/path_prefix as before; actions backend,
redirect, respond; rewrite of the forwarded path; and the config errors for each at FILE:LINE:COL."""

import unittest

from tlstest import H2Conn
from weirtest import HttpConn, WeirTestCase, free_port, http_get, http_request, read_request_head


class RouteRulesTest(WeirTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()

    def setUp(self):
        super().setUp()
        self.names = {n: self.start_whoami(n) for n in ("exact", "regex", "method", "hdr", "cookie",
                                                        "query", "api", "default")}
        routes = [
            {"match": {"path": "/ping"}, "respond": {"status": 200, "body": "pong"}},
            {"match": {"path": "/teapot"},
             "respond": {"status": 418, "body": "{\"short\": true}", "content_type": "application/json"}},
            {"match": {"path": "/empty"}, "respond": {"status": 204}},
            {"match": {"path_prefix": "/old/"},
             "redirect": {"to": "https://new.example.com", "status": 301, "keep_path": True}},
            {"match": {"path": "/moved"}, "redirect": {"to": "/elsewhere"}},
            {"match": {"path": "/exact"}, "backend": "exact"},
            {"match": {"path_regex": "^/v[0-9]+/users/"}, "backend": "regex"},
            {"match": {"path_prefix": "/m/", "methods": ["DELETE", "PATCH"]}, "backend": "method"},
            {"match": {"path_prefix": "/h/", "headers": {"X-Canary": "1", "Authorization": "*"}},
             "backend": "hdr"},
            {"match": {"path_prefix": "/c/", "cookies": {"beta": "yes"}}, "backend": "cookie"},
            {"match": {"path_prefix": "/q/", "query": {"debug": "on air", "trace": "*"}}, "backend": "query"},
            {"match": {"path_prefix": "/api/"}, "rewrite": {"strip_prefix": "/api", "add_prefix": "/v2"},
             "backend": "api"},
            {"match": {"path_prefix": "/"}, "backend": "default"},
        ]
        backends = [{"name": n, "servers": [{"address": w.address}]} for n, w in self.names.items()]
        cfg = {"workers": 1, "admin": {"listen": f"127.0.0.1:{free_port()}"},
               "listeners": [{"name": "web", "listen": f"127.0.0.1:{free_port()}", "routes": routes,
                              "h2c": True}],
               "backends": backends}
        self.lb = self.start_weir(cfg)
        self.port = self.lb.port

    def name(self, target, method="GET", headers=None):
        return http_request(self.port, method, target, headers=headers).whoami_name()

    def test_respond(self):
        r = http_get(self.port, "/ping")
        self.assertEqual((r.status, r.text, r.header("content-type")), (200, "pong", "text/plain"))
        r = http_get(self.port, "/teapot")
        self.assertEqual(r.status, 418)
        self.assertEqual(r.header("content-type"), "application/json")
        self.assertEqual(r.text, '{"short": true}')
        r = http_get(self.port, "/empty")
        self.assertEqual(r.status, 204)
        self.assertIsNone(r.header("content-length"))
        # HEAD gets the head only, and the connection goes on.
        with HttpConn(self.port) as c:
            r = c.request("HEAD", "/ping")
            self.assertEqual((r.status, r.body), (200, b""))
            self.assertEqual(c.get("/ping").text, "pong")
        m = self.lb.metrics()
        self.assertEqual(m.get("weir_upstream_connects_total"), 0)  # no server involved

    def test_redirect(self):
        r = http_get(self.port, "/old/a/b?x=1&y=2")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.header("location"), "https://new.example.com/old/a/b?x=1&y=2")
        r = http_get(self.port, "/moved?z=9")
        self.assertEqual(r.status, 302)
        self.assertEqual(r.header("location"), "/elsewhere")

    def test_path_matchers(self):
        self.assertEqual(self.name("/exact"), "exact")
        self.assertEqual(self.name("/exact?q=1"), "exact")  # the path, without the query
        self.assertEqual(self.name("/exact/more"), "default")
        self.assertEqual(self.name("/v2/users/7"), "regex")
        self.assertEqual(self.name("/v10/users/"), "regex")
        self.assertEqual(self.name("/vx/users/7"), "default")
        self.assertEqual(self.name("/x/v2/users/7"), "default")  # anchored by ^

    def test_methods(self):
        self.assertEqual(self.name("/m/1", "DELETE"), "method")
        self.assertEqual(self.name("/m/1", "PATCH"), "method")
        self.assertEqual(self.name("/m/1", "GET"), "default")
        self.assertEqual(self.name("/m/1", "delete"), "default")  # methods are case-sensitive

    def test_headers(self):
        both = [("X-Canary", "1"), ("Authorization", "Bearer t")]
        self.assertEqual(self.name("/h/1", headers=both), "hdr")
        self.assertEqual(self.name("/h/1", headers=[("x-canary", "1"), ("authorization", "")]), "hdr")
        self.assertEqual(self.name("/h/1", headers=[("X-Canary", "1")]), "default")
        self.assertEqual(self.name("/h/1", headers=[("X-Canary", "2"), ("Authorization", "x")]), "default")
        self.assertEqual(self.name("/h/1", headers=[("X-Canary", "1 "), ("Authorization", "x")]), "hdr")

    def test_cookies(self):
        self.assertEqual(self.name("/c/1", headers=[("Cookie", "a=1; beta=yes; z=2")]), "cookie")
        self.assertEqual(self.name("/c/1", headers=[("Cookie", "a=1"), ("Cookie", "beta=yes")]), "cookie")
        self.assertEqual(self.name("/c/1", headers=[("Cookie", "beta=no")]), "default")
        self.assertEqual(self.name("/c/1", headers=[("Cookie", "xbeta=yes")]), "default")
        self.assertEqual(self.name("/c/1"), "default")

    def test_query(self):
        self.assertEqual(self.name("/q/1?debug=on+air&trace"), "query")
        self.assertEqual(self.name("/q/1?trace=1&debug=on%20air"), "query")
        self.assertEqual(self.name("/q/1?debug=on+air"), "default")  # trace missing
        self.assertEqual(self.name("/q/1?debug=onair&trace=1"), "default")

    def test_rewrite(self):
        r = http_get(self.port, "/api/users?x=1")
        self.assertWhoami(r, "api")
        self.assertIn("GET /v2/users?x=1 HTTP/1.1", r.text)
        r = http_get(self.port, "/api/")
        self.assertIn("GET /v2/ HTTP/1.1", r.text)

    def test_http2_uses_the_same_rules(self):
        h2 = H2Conn(self.port)
        self.addCleanup(h2.close)
        self.assertEqual(h2.get("/ping").text, "pong")
        s = h2.get("/old/z")
        self.assertEqual((s.status, s.header("location")), (301, "https://new.example.com/old/z"))
        s = h2.get("/h/1", headers=[("x-canary", "1"), ("authorization", "a")])
        self.assertTrue(s.text.startswith("Name: hdr"), s.text[:80])
        s = h2.get("/c/1", headers=[("cookie", "a=1"), ("cookie", "beta=yes")])
        self.assertTrue(s.text.startswith("Name: cookie"), s.text[:80])


class RouteRulesConfigErrorsTest(WeirTestCase):
    def check(self, route_yaml: str, expected: str):
        text = ("listeners:\n  - name: web\n    listen: 127.0.0.1:8080\n    routes:\n" + route_yaml +
                "backends:\n  - name: web\n    servers:\n      - address: 127.0.0.1:9001\n")
        path = self.write_config(text, "bad.yaml")
        p = self.run_weir("check", "-c", path)
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 1, err)
        self.assertIn(expected, err)

    def test_errors(self):
        self.check("      - match: { path_regex: \"^/(a\" }\n        backend: web\n",
                   "bad.yaml:5:30: \"path_regex\" \"^/(a\" does not compile: missing ): ^/(a")
        self.check("      - match: { path: /a }\n", "bad.yaml:5:9: a route needs one action")
        self.check("      - match: { path: /a }\n        backend: web\n        respond: { status: 200 }\n",
                   "bad.yaml:7:9: a route has one action only")
        self.check("      - match: { headers: { X-A: \"a\\r\\nb\" } }\n        backend: web\n",
                   "must not contain control characters")
        self.check("      - match: { methods: [\"GE T\"] }\n        backend: web\n", "invalid method \"GE T\"")
        self.check("      - match: { path: /a }\n        redirect: { to: /b, status: 300 }\n",
                   "redirect \"status\" must be 301, 302, 303, 307 or 308, got 300")
        self.check("      - match: { path: /a }\n        respond: { status: 200 }\n        rewrite: { add_prefix: /x }\n",
                   "\"rewrite\" changes the path forwarded to a backend")
        self.check("      - match: { path: a }\n        backend: web\n", "\"path\" must start with \"/\"")


def chatty_origin(c):
    while read_request_head(c):
        c.sendall(b"HTTP/1.1 200 OK\r\nServer: Apache/2.4.1 (Unix)\r\nX-Powered-By: PHP/5.2\r\n"
                  b"x-aspnet-version: 4.0\r\nX-AspNetMvc-Version: 5.2\r\nX-Other: kept\r\n"
                  b"Content-Length: 2\r\n\r\nok")


class HideServerHeadersTest(WeirTestCase):
    HIDDEN = ("server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version")

    def lb(self, **listener):
        origin = self.start_server(chatty_origin)
        listener.setdefault("h2c", True)
        return self.start_lb([{"address": origin.address, "name": "o"}], listener_extra=listener)

    def test_hidden_by_default_on_http1_and_http2(self):
        lb = self.lb()
        r = http_get(lb.port, "/")
        self.assertEqual(r.status, 200)
        for name in self.HIDDEN:
            self.assertIsNone(r.header(name), name)
        self.assertEqual(r.header("x-other"), "kept")
        h2 = H2Conn(lb.port)
        self.addCleanup(h2.close)
        s = h2.get("/")
        self.assertEqual(s.status, 200)
        for name in self.HIDDEN:
            self.assertIsNone(s.header(name), name)
        self.assertEqual(s.header("x-other"), "kept")
        # weir's own answers name no server either.
        self.assertIsNone(http_get(lb.port, "/", host=None).header("server"))

    def test_off_keeps_them(self):
        lb = self.lb(hide_server_headers=False)
        r = http_get(lb.port, "/")
        self.assertEqual(r.header("server"), "Apache/2.4.1 (Unix)")
        self.assertEqual(r.header("x-powered-by"), "PHP/5.2")
        self.assertEqual(r.header("x-aspnet-version"), "4.0")

    def test_a_route_may_set_its_own(self):
        origin = self.start_server(chatty_origin)
        routes = [{"match": {"path_prefix": "/"}, "backend": "web",
                   "response_headers": {"set": {"Server": "front"}}}]
        lb = self.start_lb([{"address": origin.address}], routes=routes)
        r = http_get(lb.port, "/")
        self.assertEqual(r.header_all("server"), ["front"])
        self.assertIsNone(r.header("x-powered-by"))


if __name__ == "__main__":
    unittest.main()
