"""Routing: host (exact, wildcard, case, port), path_prefix, first match wins, 404."""

import unittest

from weirtest import Env, HttpConn, WeirTestCase, free_port, http_get, lb_config


class RoutingTest(WeirTestCase):
    # One weir and five backends for the whole class; the tests only read.
    @classmethod
    def setUpClass(cls):
        env = Env(cls.addClassCleanup)
        cls.api = env.start_whoami("api")
        cls.wild = env.start_whoami("wild")
        cls.static = env.start_whoami("static")
        cls.exact = env.start_whoami("exact")
        cls.fallback = env.start_whoami("fallback")
        routes = [
            {"match": {"host": "api.example.com"}, "backend": "api"},
            {"match": {"host": "*.example.com", "path_prefix": "/static/"}, "backend": "static"},
            {"match": {"host": "*.example.com"}, "backend": "wild"},
            # Never reached for app.example.com: the wildcard above wins (first match).
            {"match": {"host": "app.example.com"}, "backend": "exact"},
            {"match": {"path_prefix": "/fb/"}, "backend": "fallback"},
        ]
        backends = [{"name": n, "servers": [{"address": w.address}]}
                    for n, w in [("api", cls.api), ("wild", cls.wild), ("static", cls.static),
                                 ("exact", cls.exact), ("fallback", cls.fallback)]]
        cls.lb = env.start_weir(lb_config(free_port(), [], routes=routes, backends=backends,
                                            admin_port=free_port()))

    def get(self, host, path="/"):
        return http_get(self.lb.port, path, host=host)

    def test_exact_host(self):
        self.assertWhoami(self.get("api.example.com"), "api")

    def test_host_case_insensitive_and_port_ignored(self):
        self.assertWhoami(self.get("API.Example.COM"), "api")
        self.assertWhoami(self.get("api.example.com:8080"), "api")
        self.assertWhoami(self.get("Api.EXAMPLE.com:1"), "api")

    def test_wildcard_host(self):
        self.assertWhoami(self.get("foo.example.com"), "wild")
        self.assertWhoami(self.get("a.b.example.com"), "wild")
        self.assertWhoami(self.get("FOO.EXAMPLE.COM:443"), "wild")

    def test_wildcard_does_not_match_apex_or_suffix_lookalike(self):
        # "*.example.com" needs a label before ".example.com".
        self.assertEqual(self.get("example.com").status, 404)
        self.assertEqual(self.get("badexample.com").status, 404)

    def test_path_prefix(self):
        r = self.get("x.example.com", "/static/app.js")
        self.assertWhoami(r, "static")
        self.assertIn("GET /static/app.js HTTP/1.1", r.text)
        # Prefix is compared on the path: "/static" without the slash is not "/static/".
        self.assertWhoami(self.get("x.example.com", "/static"), "wild")
        self.assertWhoami(self.get("x.example.com", "/staticfoo"), "wild")
        # The query is not part of the path.
        self.assertWhoami(self.get("x.example.com", "/static/?q=1"), "static")

    def test_first_match_wins(self):
        # app.example.com matches the wildcard route listed before its exact route.
        self.assertWhoami(self.get("app.example.com"), "wild")
        # The exact api route is listed first, so /static/ on api still goes to api.
        self.assertWhoami(self.get("api.example.com", "/static/x"), "api")

    def test_path_only_route_any_host(self):
        self.assertWhoami(self.get("other.test", "/fb/x"), "fallback")
        self.assertWhoami(self.get("127.0.0.1", "/fb/"), "fallback")

    def test_no_match_is_404_and_connection_survives(self):
        before = {b["name"]: sum(s["requests_total"] for s in b["servers"])
                  for b in self.lb.backends()["backends"]}
        with HttpConn(self.lb.port) as c:
            r = c.get("/nothing", host="other.test")
            self.assertEqual(r.status, 404)
            self.assertNotIn("Name:", r.text)
            # Without a body the connection stays usable.
            r2 = c.get("/x", host="api.example.com")
            self.assertWhoami(r2, "api")
        # None of the 404s reached a backend.
        counts = {b["name"]: sum(s["requests_total"] for s in b["servers"])
                  for b in self.lb.backends()["backends"]}
        delta = {k: counts[k] - before[k] for k in counts}
        self.assertEqual(delta, {"api": 1, "wild": 0, "static": 0, "exact": 0, "fallback": 0})

    def test_absolute_form_routed_by_authority(self):
        with HttpConn(self.lb.port) as c:
            c.send(b"GET http://api.example.com/abs?x=1 HTTP/1.1\r\nHost: foo.example.com\r\n\r\n")
            r = c.read_response()
            self.assertWhoami(r, "api")
            # The backend gets origin-form.
            self.assertIn("GET /abs?x=1 HTTP/1.1", r.text)
            c.send(b"GET http://q.example.com/static/z HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
            r = c.read_response()
            self.assertWhoami(r, "static")
            self.assertIn("GET /static/z HTTP/1.1", r.text)

    def test_http10_without_host_uses_path_routes(self):
        with HttpConn(self.lb.port) as c:
            c.send(b"GET /fb/ten HTTP/1.0\r\n\r\n")
            r = c.read_response()
            self.assertWhoami(r, "fallback")
            self.assertTrue(c.is_closed(5))


class CatchAllTest(WeirTestCase):
    def test_backend_shorthand_matches_everything(self):
        w = self.start_whoami("only")
        lb = self.start_lb([w.port])
        for host, path in [("a", "/"), ("b.c", "/x/y?z"), ("[::1]:80", "/"), ("127.0.0.1:1", "/q")]:
            r = http_get(lb.port, path, host=host)
            self.assertWhoami(r, "only")
            self.assertIn(f"GET {path} HTTP/1.1", r.text)


if __name__ == "__main__":
    unittest.main()
