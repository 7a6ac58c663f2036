"""HTTP caching (edge.md "Cache"): weir as a shared cache (RFC 9111), with stale-if-error and
stale-while-revalidate (RFC 5861), CDN-Cache-Control (RFC 9213) and Cache-Status (RFC 9211), end
to end: the real weir binary in front of a scripted origin (cachetest.Origin) that counts and
records every request, so each test can say "the origin saw N requests" and "the revalidation
carried If-None-Match". One weir and one origin per class; every test uses its own paths.
Staleness comes from Date fields set in the past, never from waiting.

RFC section                         test
----------------------------------  -------------------------------------------------------------
9111 §3, §4 (store, reuse, Age)     test_s3_s4_stored_and_reused_http1
                                    test_s3_s4_stored_and_reused_http2
9111 §3 (method)                    test_s3_post_response_not_stored
9111 §3 (size: max_object)          test_s3_larger_than_max_object_not_stored
9111 §3, §7 (Set-Cookie)            test_s3_set_cookie_response_is_not_stored
9111 §3.5 (Authorization)           test_s3_5_authorization_not_stored_without_public
9111 §4.1 (Vary)                    test_s4_1_vary_two_variants_each_reused
                                    test_s4_1_vary_missing_header_vs_present
                                    test_s4_1_vary_star_never_reused
9111 §4.2.1 (Expires - Date)        test_s4_2_1_expires_minus_date
9111 §4.2.2 (heuristic)             test_s4_2_2_heuristic_freshness_from_last_modified
                                    test_s4_2_2_status_500_not_heuristically_cacheable
9111 §4.2.3, §5.1 (Age)             test_s4_2_3_origin_age_counts_in_the_answer
                                    test_s4_2_3_origin_age_beyond_lifetime_is_stale
9111 §4.3.1, §4.3.3, §4.3.4         test_s4_3_revalidation_etag_304_updates_headers
                                    test_s4_3_revalidation_last_modified_if_modified_since
                                    test_s4_3_3_revalidation_200_replaces_stored
9111 §4.3.2 (client conditionals)   test_s4_3_2_if_none_match_answered_304_from_store
                                    test_s4_3_2_if_modified_since_answered_304_from_store
                                    test_s4_3_2_range_answered_206_from_store
                                    test_s4_3_2_unsatisfiable_range_answered_416
9111 §4.3.5 (HEAD)                  test_s4_3_5_head_answered_from_stored_get
9111 §4.4 (invalidation)            test_s4_4_unsafe_method_invalidates_uri
                                    test_s4_4_location_and_content_location_invalidated
                                    test_s4_4_failed_unsafe_method_does_not_invalidate
9111 §5.2.1.1 (req max-age)         test_s5_2_1_1_request_max_age_0_revalidates
9111 §5.2.1.2 (req max-stale)       test_s5_2_1_2_request_max_stale_serves_stale
9111 §5.2.1.3 (req min-fresh)       test_s5_2_1_3_request_min_fresh
9111 §5.2.1.4 (req no-cache)        test_s5_2_1_4_request_no_cache_revalidates
9111 §5.2.1.5 (req no-store)        test_s5_2_1_5_request_no_store_not_stored
9111 §5.2.1.7 (only-if-cached)      test_s5_2_1_7_only_if_cached
9111 §5.2.2.2 (must-revalidate)     test_s5_2_2_2_must_revalidate_forbids_max_stale
9111 §5.2.2.4 (resp no-cache)       test_s5_2_2_4_response_no_cache_revalidated_every_time
9111 §5.2.2.5 (resp no-store)       test_s5_2_2_5_response_no_store_not_stored
9111 §5.2.2.7 (private)             test_s5_2_2_7_private_not_stored
9111 §5.2.2.10 (s-maxage)           test_s5_2_2_10_s_maxage_over_max_age
9111 §5.3 (invalid Expires)         test_s5_3_invalid_expires_is_stale
5861 §3 (stale-while-revalidate)    test_rfc5861_s3_stale_while_revalidate_answers_at_once
5861 §4 (stale-if-error)            test_rfc5861_s4_stale_if_error_on_503
                                    test_rfc5861_s4_stale_if_error_origin_down
9213 §2.2 (CDN-Cache-Control)       test_rfc9213_s2_2_cdn_cache_control_takes_precedence
9211 §2 (Cache-Status)              test_rfc9211_s2_cache_status
                                    test_rfc9211_s2_cache_status_on_weirs_own_answers
edge.md (coalescing)                test_edge_coalescing_one_origin_request_for_50_clients
edge.md + 9111 §4.1 (hostile Vary)  HostileVaryTest.test_10000_vary_values_stay_within_memory
"""

import threading
import time
import unittest

from cachetest import Origin, Resp, http_date
from tlstest import curl
from weirtest import (Env, HttpConn, WeirTestCase, build_request, free_port, http_request,
                      lb_config, rss_anon, run_threads, wait_until)

HOSTNAME = "example.test"
MIB = 1024 * 1024
FRESH = ("Cache-Control", "max-age=60")
DAYS_AGO_10 = -10 * 86400


def cache_config(port: int, routes: list, backends: list, memory: str = "16MiB") -> dict:
    return lb_config(port, [], routes=routes, backends=backends, listener_extra={"h2c": True},
                     top_extra={"caches": [{"name": "edge", "memory": memory, "max_object": "1MiB"}]})


def cache_status(r) -> str:
    return r.header("Cache-Status") or ""


def weir_member(r) -> tuple[str, dict] | None:
    """weir's member of Cache-Status (RFC 9211 §2: a List of cache names with parameters):
    (name, {param: value or True}), or None."""
    for member in cache_status(r).split(","):
        parts = [p.strip() for p in member.split(";")]
        if parts[0] == "weir":
            params = {}
            for p in parts[1:]:
                k, eq, v = p.partition("=")
                params[k] = v if eq else True
            return parts[0], params
    return None


class CacheTest(WeirTestCase):
    @classmethod
    def setUpClass(cls):
        env = Env(cls.addClassCleanup)
        cls.origin = Origin()
        cls.addClassCleanup(cls.origin.stop)
        cls.flaky = Origin()  # stopped by the origin-down test
        cls.addClassCleanup(cls.flaky.stop)
        routes = [
            {"match": {"path_prefix": "/down/"}, "cache": "edge", "backend": "flaky"},
            {"match": {"path_prefix": "/"}, "cache": "edge", "backend": "origin"},
        ]
        backends = [{"name": "origin", "servers": [{"address": cls.origin.address}]},
                    {"name": "flaky", "servers": [{"address": cls.flaky.address}]}]
        cls.port = free_port()
        cls.lb = env.start_weir(cache_config(cls.port, routes, backends))

    # -- helpers

    def p(self, name: str = "x") -> str:
        """A path of this test's own."""
        return f"/{self._testMethodName}/{name}"

    def req(self, path: str, headers=None, method: str = "GET", body: bytes | None = None,
            host: str = HOSTNAME):
        return http_request(self.port, method, path, headers, body, host)

    def script(self, path: str, what):
        self.origin.script(path, what)

    def count(self, path: str, method: str | None = None) -> int:
        return self.origin.count(path, method)

    def describe(self, r) -> str:
        status = getattr(r, "status", None) or getattr(r, "code", None)
        return (f"status {status}, Cache-Status {cache_status(r)!r}, Age {r.header('Age')!r}, "
                f"body {r.body[:60]!r}")

    def assertHit(self, r, why: str = ""):
        m = weir_member(r)
        self.assertTrue(m is not None and m[1].get("hit") is True,
                        f"expected a hit (Cache-Status: weir; hit): {self.describe(r)} {why}")

    def assertForwarded(self, r, why: str = ""):
        m = weir_member(r)
        self.assertTrue(m is not None and "fwd" in m[1],
                        f"expected a forwarded answer (Cache-Status: weir; fwd=...): "
                        f"{self.describe(r)} {why}")

    def assertOriginCount(self, path: str, n: int, why: str, method: str | None = None):
        got = self.origin.requests(path, method)
        self.assertEqual(len(got), n, f"{why}: the origin saw {len(got)} requests for {path}, "
                                      f"expected {n}: {got}")

    def assertAgeSane(self, r, low: int = 0, high: int = 5):
        age = r.header("Age")
        self.assertIsNotNone(age, f"no Age on an answer from the store (§4, §5.1): {self.describe(r)}")
        self.assertRegex(age, r"^\d+$", "Age must be delta-seconds (§5.1)")
        self.assertTrue(low <= int(age) <= high, f"Age {age} not within [{low}, {high}]")

    def stale_resp(self, body: bytes, extra_cc: str = "", etag: str | None = '"v1"',
                   headers=()) -> Resp:
        """A response that is already stale: Date 100 s ago, max-age=10."""
        cc = "max-age=10" + (", " + extra_cc if extra_cc else "")
        hs = [("Date", http_date(-100)), ("Cache-Control", cc)] + list(headers)
        if etag:
            hs.append(("ETag", etag))
        return Resp(200, hs, body)

    # -- §3, §4: stored and reused

    def test_s3_s4_stored_and_reused_http1(self):
        """RFC 9111 §3, §4: a 200 with max-age is stored and reused: the origin sees one
        request, the second answer carries the same body, a sane Age and Cache-Status hit."""
        path = self.p()
        body = b"stored and reused\n" * 10
        self.script(path, Resp(200, [FRESH, ("Content-Type", "text/plain")], body))
        r1 = self.req(path)
        self.assertEqual(r1.status, 200)
        self.assertEqual(r1.body, body)
        r2 = self.req(path)
        self.assertEqual(r2.status, 200)
        self.assertEqual(r2.body, body)
        self.assertEqual(r2.header("Content-Type"), "text/plain")
        self.assertOriginCount(path, 1, "a fresh stored response must be reused")
        self.assertHit(r2)
        self.assertAgeSane(r2)

    def test_s3_s4_stored_and_reused_http2(self):
        """RFC 9111 §3, §4 over HTTP/2 (h2c prior knowledge): stored from an HTTP/1.1 request,
        reused for HTTP/2 ones of the same URI (the key does not depend on the protocol)."""
        path = self.p()
        body = b"over h2\n" * 100
        self.script(path, Resp(200, [FRESH, ("Content-Type", "text/plain")], body))
        url = f"http://127.0.0.1:{self.port}{path}"
        first = curl(url, "--http1.1")
        self.assertEqual((first.rc, first.code, first.body), (0, 200, body), first.describe())
        for _ in range(2):
            r = curl(url, "--http2-prior-knowledge")
            self.assertEqual(r.rc, 0, r.describe())
            self.assertEqual(r.version, "2")
            self.assertEqual(r.code, 200)
            self.assertEqual(r.body, body)
            self.assertHit(r)
            self.assertAgeSane(r)
        self.assertOriginCount(path, 1, "HTTP/2 requests must be answered from the store")

    # -- not stored

    def test_s5_2_2_5_response_no_store_not_stored(self):
        """RFC 9111 §5.2.2.5: a response with no-store (even with max-age) is not stored."""
        path = self.p()
        self.script(path, Resp(200, [("Cache-Control", "no-store, max-age=60")], b"secret"))
        for _ in range(2):
            r = self.req(path)
            self.assertEqual((r.status, r.body), (200, b"secret"))
            self.assertNotIn("stored", weir_member(r)[1] if weir_member(r) else {})
        self.assertOriginCount(path, 2, "no-store must not be stored")

    def test_s5_2_2_7_private_not_stored(self):
        """RFC 9111 §5.2.2.7: a shared cache must not store a private response."""
        path = self.p()
        self.script(path, Resp(200, [("Cache-Control", "private, max-age=60")], b"mine"))
        for _ in range(2):
            self.assertEqual(self.req(path).body, b"mine")
        self.assertOriginCount(path, 2, "private must not be stored by a shared cache")

    def test_s3_5_authorization_not_stored_without_public(self):
        """RFC 9111 §3.5: a response to a request with Authorization is not stored by a shared
        cache unless it has public, s-maxage or must-revalidate."""
        auth = [("Authorization", "Bearer abc")]
        for cc, want in [("max-age=60", 2), ("public, max-age=60", 1), ("s-maxage=60", 1),
                         ("must-revalidate, max-age=60", 1)]:
            with self.subTest(cc=cc):
                path = self.p(cc.replace(" ", "").replace(",", "_").replace("=", ""))
                self.script(path, Resp(200, [("Cache-Control", cc)], b"authorized"))
                for _ in range(2):
                    self.assertEqual(self.req(path, auth).body, b"authorized")
                self.assertOriginCount(path, want, f"Authorization + Cache-Control: {cc}")

    def test_s3_set_cookie_response_is_not_stored(self):
        """RFC 9111 §3 allows storing a response with Set-Cookie, and RFC 6265 §8.3 / RFC 9111
        §7 warn what that does: one client's session cookie replayed to every other. weir, like
        NGINX and Varnish by default, never stores such a response: each client gets its own,
        intact, from the origin."""
        path = self.p()
        self.script(path, Resp(200, [FRESH, ("Set-Cookie", "sid=1; Path=/")], b"with cookie"))
        r1, r2 = self.req(path), self.req(path)
        self.assertEqual((r1.body, r2.body), (b"with cookie", b"with cookie"))
        self.assertEqual((r1.header("Set-Cookie"), r2.header("Set-Cookie")),
                         ("sid=1; Path=/", "sid=1; Path=/"))
        self.assertOriginCount(path, 2, "a response with Set-Cookie must not be replayed")
        self.assertNotIn("stored", r1.header("Cache-Status") or "")

    def test_s4_2_2_status_500_not_heuristically_cacheable(self):
        """RFC 9111 §3, §4.2.2: a 500 without explicit freshness is not heuristically
        cacheable, Last-Modified or not, so it is not reused."""
        path = self.p()
        self.script(path, Resp(500, [("Last-Modified", http_date(DAYS_AGO_10))], b"boom"))
        for _ in range(2):
            self.assertEqual(self.req(path).status, 500)
        self.assertOriginCount(path, 2, "a 500 without max-age/Expires must not be reused")

    def test_s3_post_response_not_stored(self):
        """RFC 9111 §3 (method): a POST's response is not stored, for POSTs nor for a later GET."""
        path = self.p()
        self.script(path, lambda req, i: Resp(200, [FRESH], f"{req.method} {i}".encode()))
        for _ in range(2):
            self.assertEqual(self.req(path, method="POST", body=b"data").status, 200)
        r = self.req(path)
        self.assertEqual(r.body, b"GET 2", "a GET after POSTs must not get the POST's response")
        self.assertOriginCount(path, 2, "every POST must reach the origin", method="POST")
        self.assertOriginCount(path, 1, "the GET must reach the origin", method="GET")

    def test_s3_larger_than_max_object_not_stored(self):
        """RFC 9111 §3 lets a cache decline; weir's max_object (1 MiB here): a 1.5 MiB response,
        with Content-Length or chunked, goes through whole and is not stored."""
        body = bytes(range(256)) * (6 * 1024)  # 1.5 MiB
        for chunked in (False, True):
            with self.subTest(chunked=chunked):
                path = self.p("chunked" if chunked else "length")
                self.script(path, Resp(200, [FRESH], body, chunked=chunked))
                for _ in range(2):
                    r = self.req(path)
                    self.assertEqual(r.status, 200)
                    self.assertTrue(r.body == body, f"body of {len(r.body)} bytes differs")
                self.assertOriginCount(path, 2, "a response over max_object must not be stored")
        small = self.p("small")
        self.script(small, Resp(200, [FRESH], b"s"))
        self.req(small)
        self.assertHit(self.req(small), "the cache must keep working after oversized responses")

    def test_s5_2_1_5_request_no_store_not_stored(self):
        """RFC 9111 §5.2.1.5: a request with no-store: its response is not stored."""
        path = self.p()
        self.script(path, Resp(200, [FRESH], b"body"))
        self.req(path, [("Cache-Control", "no-store")])
        self.req(path)
        self.assertOriginCount(path, 2, "the response to a no-store request must not be stored")
        self.assertHit(self.req(path), "the next plain request's response is stored")
        self.assertOriginCount(path, 2, "stored after a plain request")

    # -- freshness

    def test_s5_2_2_10_s_maxage_over_max_age(self):
        """RFC 9111 §5.2.2.10, §4.2.1: a shared cache uses s-maxage over max-age."""
        a, b = self.p("a"), self.p("b")
        self.script(a, Resp(200, [("Cache-Control", "max-age=0, s-maxage=60")], b"a"))
        self.script(b, Resp(200, [("Cache-Control", "max-age=60, s-maxage=0")], b"b"))
        self.req(a)
        self.assertHit(self.req(a), "s-maxage=60 must make it fresh despite max-age=0")
        self.assertOriginCount(a, 1, "s-maxage=60")
        self.req(b)
        self.req(b)
        self.assertOriginCount(b, 2, "s-maxage=0 must make it stale despite max-age=60")

    def test_s4_2_1_expires_minus_date(self):
        """RFC 9111 §4.2.1: without max-age, the lifetime is Expires - Date (not Expires - now)."""
        a, b = self.p("a"), self.p("b")
        # Date 100 s ago, Expires in 60 s: lifetime 160, age ~100: fresh.
        self.script(a, Resp(200, [("Date", http_date(-100)), ("Expires", http_date(60))], b"a"))
        # Expires equal to Date: lifetime 0: stale at once.
        now = http_date()
        self.script(b, Resp(200, [("Date", now), ("Expires", now), ("ETag", '"b"')], b"b"))
        self.req(a)
        r = self.req(a)
        self.assertHit(r, "Expires - Date = 160 s, age 100 s: fresh")
        self.assertAgeSane(r, 100, 110)
        self.req(b)
        self.req(b)
        self.assertOriginCount(b, 2, "Expires == Date: stale")

    def test_s5_3_invalid_expires_is_stale(self):
        """RFC 9111 §5.3: an invalid Expires (e.g. "0") means already expired: the heuristic of
        §4.2.2 does not apply (Expires is present) even with an old Last-Modified."""
        path = self.p()
        self.script(path, Resp(200, [("Expires", "0"), ("ETag", '"e"'),
                                     ("Last-Modified", http_date(DAYS_AGO_10))], b"exp"))
        self.req(path)
        r = self.req(path)
        self.assertEqual(r.body, b"exp")
        self.assertOriginCount(path, 2, "an invalid Expires must make the response stale")

    def test_s4_2_2_heuristic_freshness_from_last_modified(self):
        """RFC 9111 §4.2.2: a 200 with Last-Modified 10 days ago and no explicit freshness gets
        a heuristic lifetime (weir: 10 % of Date - Last-Modified, max 1 day): stored, reused."""
        path = self.p()
        self.script(path, Resp(200, [("Last-Modified", http_date(DAYS_AGO_10))], b"old doc"))
        self.req(path)
        r = self.req(path)
        self.assertEqual(r.body, b"old doc")
        self.assertHit(r)
        self.assertOriginCount(path, 1, "heuristically fresh")

    def test_rfc9213_s2_2_cdn_cache_control_takes_precedence(self):
        """RFC 9213 §2.2: CDN-Cache-Control overrides Cache-Control for weir's caching (and is
        not forwarded to the client, §2.1); Cache-Control reaches the client unchanged."""
        a, b = self.p("a"), self.p("b")
        self.script(a, Resp(200, [("CDN-Cache-Control", "max-age=60"),
                                  ("Cache-Control", "no-store")], b"cdn"))
        self.script(b, Resp(200, [("CDN-Cache-Control", "no-store"), FRESH], b"cdn-no"))
        r1, r2 = self.req(a), self.req(a)
        self.assertOriginCount(a, 1, "CDN-Cache-Control: max-age=60 must win over no-store")
        self.assertHit(r2)
        for r in (r1, r2):
            self.assertIsNone(r.header("CDN-Cache-Control"), "CDN-Cache-Control sent to the client")
            self.assertEqual(r.header("Cache-Control"), "no-store")
        r3, _ = self.req(b), self.req(b)
        self.assertOriginCount(b, 2, "CDN-Cache-Control: no-store must win over max-age=60")
        self.assertIsNone(r3.header("CDN-Cache-Control"))

    # -- Age

    def test_s4_2_3_origin_age_counts_in_the_answer(self):
        """RFC 9111 §4.2.3, §5.1: the origin's Age counts: Age 30 + max-age=60 is fresh, and the
        answer from the store says Age >= 30."""
        path = self.p()
        self.script(path, Resp(200, [FRESH, ("Age", "30")], b"aged"))
        self.req(path)
        r = self.req(path)
        self.assertHit(r)
        self.assertAgeSane(r, 30, 35)

    def test_s4_2_3_origin_age_beyond_lifetime_is_stale(self):
        """RFC 9111 §4.2.3: Age 100 with max-age=60 is stale on arrival: the next request is
        revalidated with the origin."""
        path = self.p()
        self.script(path, Resp(200, [FRESH, ("Age", "100"), ("ETag", '"a"')], b"aged"))
        self.req(path)
        r = self.req(path)
        self.assertEqual((r.status, r.body), (200, b"aged"))
        self.assertOriginCount(path, 2, "Age 100 > max-age 60: stale")
        self.assertEqual(self.origin.requests(path)[1].header("If-None-Match"), '"a"')

    # -- request directives

    def test_s5_2_1_4_request_no_cache_revalidates(self):
        """RFC 9111 §5.2.1.4: a request with no-cache is not answered from the store without
        validating with the origin."""
        path = self.p()
        self.script(path, Resp(200, [FRESH, ("ETag", '"nc"')], b"validated"))
        self.req(path)
        r = self.req(path, [("Cache-Control", "no-cache")])
        self.assertEqual((r.status, r.body), (200, b"validated"))
        self.assertOriginCount(path, 2, "request no-cache must reach the origin")
        self.assertForwarded(r)

    def test_s5_2_1_1_request_max_age_0_revalidates(self):
        """RFC 9111 §5.2.1.1: max-age=0 in the request: a stored response older than 0 s (any)
        is not used without validation."""
        path = self.p()
        self.script(path, Resp(200, [("Date", http_date(-5)), FRESH, ("ETag", '"m"')], b"m"))
        self.req(path)
        self.assertHit(self.req(path))
        r = self.req(path, [("Cache-Control", "max-age=0")])
        self.assertEqual(r.body, b"m")
        self.assertOriginCount(path, 2, "request max-age=0 must reach the origin")

    def test_s5_2_1_3_request_min_fresh(self):
        """RFC 9111 §5.2.1.3: min-fresh=N wants a response fresh for N more seconds."""
        path = self.p()
        self.script(path, Resp(200, [FRESH, ("ETag", '"f"')], b"f"))
        self.req(path)
        self.assertHit(self.req(path, [("Cache-Control", "min-fresh=10")]), "60 s left >= 10")
        self.assertOriginCount(path, 1, "min-fresh=10")
        self.req(path, [("Cache-Control", "min-fresh=120")])
        self.assertOriginCount(path, 2, "min-fresh=120 with at most 60 s left must reach the origin")

    def test_s5_2_1_2_request_max_stale_serves_stale(self):
        """RFC 9111 §5.2.1.2, §4.2.4: max-stale lets a stale response be served (Cache-Status
        says detail=stale); a max-stale smaller than the staleness does not."""
        path = self.p()
        self.script(path, self.stale_resp(b"stale ok"))  # ~90 s stale
        self.req(path)
        for cc in ("max-stale=3600", "max-stale"):
            with self.subTest(cc=cc):
                r = self.req(path, [("Cache-Control", cc)])
                self.assertEqual((r.status, r.body), (200, b"stale ok"))
                self.assertHit(r)
                self.assertEqual(weir_member(r)[1].get("detail"), "stale", self.describe(r))
                self.assertAgeSane(r, 100, 110)
                self.assertOriginCount(path, 1, f"{cc} must serve the stale response")
        self.req(path, [("Cache-Control", "max-stale=5")])
        self.assertOriginCount(path, 2, "max-stale=5 with ~90 s of staleness must revalidate")

    def test_s5_2_1_7_only_if_cached(self):
        """RFC 9111 §5.2.1.7: only-if-cached: a stored usable response, else 504 without
        contacting the origin."""
        path = self.p()
        self.script(path, Resp(200, [FRESH], b"cached"))
        r = self.req(path, [("Cache-Control", "only-if-cached")])
        self.assertEqual(r.status, 504, "nothing stored: 504")
        self.assertOriginCount(path, 0, "only-if-cached must not contact the origin")
        self.req(path)
        r = self.req(path, [("Cache-Control", "only-if-cached")])
        self.assertEqual((r.status, r.body), (200, b"cached"))
        stale = self.p("stale")
        self.script(stale, self.stale_resp(b"stale"))
        self.req(stale)
        r = self.req(stale, [("Cache-Control", "only-if-cached")])
        self.assertEqual(r.status, 504, "stored but stale: 504")
        self.assertOriginCount(stale, 1, "only-if-cached must not contact the origin")

    # -- response directives

    def test_s5_2_2_4_response_no_cache_revalidated_every_time(self):
        """RFC 9111 §5.2.2.4: a response with no-cache may be stored but is validated with the
        origin on every use; a 304 lets the stored body answer."""
        path = self.p()
        self.script(path, Resp(200, [("Cache-Control", "no-cache, max-age=60"), ("ETag", '"n"')],
                               b"revalidate me"))
        self.req(path)
        for i in (2, 3):
            r = self.req(path)
            self.assertEqual((r.status, r.body), (200, b"revalidate me"))
            self.assertOriginCount(path, i, "no-cache: every use is validated")
            self.assertEqual(self.origin.requests(path)[-1].header("If-None-Match"), '"n"',
                             "the stored response's validator must be used (§4.3.1)")
            self.assertForwarded(r)
            self.assertEqual(weir_member(r)[1].get("fwd-status"), "304", self.describe(r))

    def test_s5_2_2_2_must_revalidate_forbids_max_stale(self):
        """RFC 9111 §5.2.2.2, §4.2.4: must-revalidate: a stale response is not served, even to
        a request with max-stale."""
        path = self.p()
        self.script(path, self.stale_resp(b"strict", "must-revalidate"))
        self.req(path)
        r = self.req(path, [("Cache-Control", "max-stale=3600")])
        self.assertEqual(r.body, b"strict")
        self.assertOriginCount(path, 2, "must-revalidate must override max-stale")

    # -- Vary

    def test_s4_1_vary_two_variants_each_reused(self):
        """RFC 9111 §4.1: Vary: Accept-Language: one variant per language, each reused."""
        path = self.p()
        self.script(path, lambda req, i: Resp(200, [FRESH, ("Vary", "Accept-Language")],
                                              f"lang={req.header('accept-language')}".encode()))
        for lang in ("en", "fr", "en", "fr", "en"):
            r = self.req(path, [("Accept-Language", lang)])
            self.assertEqual(r.body, f"lang={lang}".encode(), "a variant answered the wrong request")
        self.assertOriginCount(path, 2, "two variants, each reused")

    def test_s4_1_vary_missing_header_vs_present(self):
        """RFC 9111 §4.1: a request without the Vary-named field matches only a response stored
        for a request without it too."""
        path = self.p()
        self.script(path, lambda req, i: Resp(200, [FRESH, ("Vary", "Accept-Language")],
                                              f"lang={req.header('accept-language')}".encode()))
        seq = [None, "de", None, "de"]
        for lang in seq:
            r = self.req(path, [("Accept-Language", lang)] if lang else [])
            self.assertEqual(r.body, f"lang={lang}".encode())
        self.assertOriginCount(path, 2, "absent and present are two variants, each reused")

    def test_s4_1_vary_star_never_reused(self):
        """RFC 9111 §4.1: Vary: * matches no request: never reused (weir does not store it)."""
        path = self.p()
        self.script(path, Resp(200, [FRESH, ("Vary", "*")], b"star"))
        answers = [self.req(path) for _ in range(3)]
        self.assertEqual([r.body for r in answers], [b"star"] * 3)
        self.assertOriginCount(path, 3, "Vary: * must never be reused")
        for r in answers:  # RFC 9211 §2.5: "stored" says the response was stored
            self.assertNotIn("stored", weir_member(r)[1] if weir_member(r) else {},
                             f"Cache-Status claims a Vary: * response was stored: {self.describe(r)}")

    # -- revalidation

    def test_s4_3_revalidation_etag_304_updates_headers(self):
        """RFC 9111 §4.3.1, §4.3.3, §4.3.4: a stale entry with an ETag is revalidated with
        If-None-Match; the origin's 304 (with a new field and new freshness) yields a 200 with the
        stored body and the updated fields, and refreshes the entry."""
        path = self.p()
        self.script(path, [self.stale_resp(b"stored body", headers=[("X-Version", "1")]),
                           Resp(304, [FRESH, ("ETag", '"v1"'), ("X-Version", "2")], conditional=False)])
        self.req(path)
        r = self.req(path)
        self.assertOriginCount(path, 2, "stale: revalidated")
        self.assertEqual(self.origin.requests(path)[1].header("If-None-Match"), '"v1"')
        self.assertEqual((r.status, r.body), (200, b"stored body"))
        self.assertEqual(r.header("X-Version"), "2", "the 304's fields must replace the stored ones")
        self.assertEqual(weir_member(r)[1].get("fwd-status"), "304", self.describe(r))
        r = self.req(path)
        self.assertHit(r, "the 304's max-age=60 and Date must make the entry fresh again")
        self.assertEqual((r.body, r.header("X-Version")), (b"stored body", "2"))
        self.assertOriginCount(path, 2, "fresh after the 304")

    def test_s4_3_revalidation_last_modified_if_modified_since(self):
        """RFC 9111 §4.3.1: with only Last-Modified, revalidation sends If-Modified-Since."""
        path = self.p()
        lm = http_date(DAYS_AGO_10)
        self.script(path, self.stale_resp(b"lm body", etag=None, headers=[("Last-Modified", lm)]))
        self.req(path)
        r = self.req(path)
        self.assertEqual((r.status, r.body), (200, b"lm body"))
        seen = self.origin.requests(path)
        self.assertEqual(len(seen), 2)
        self.assertEqual(seen[1].header("If-Modified-Since"), lm)
        self.assertIsNone(seen[1].header("If-None-Match"))

    def test_s4_3_3_revalidation_200_replaces_stored(self):
        """RFC 9111 §4.3.3: a full 200 to a revalidation replaces the stored response."""
        path = self.p()
        self.script(path, [self.stale_resp(b"old"),
                           Resp(200, [FRESH, ("ETag", '"v2"')], b"new", conditional=False)])
        self.assertEqual(self.req(path).body, b"old")
        self.assertEqual(self.req(path).body, b"new")
        r = self.req(path)
        self.assertEqual(r.body, b"new")
        self.assertHit(r)
        self.assertOriginCount(path, 2, "the new 200 must be stored")

    # -- RFC 5861

    def test_rfc5861_s4_stale_if_error_on_503(self):
        """RFC 5861 §4: stale-if-error=600 and the revalidation answered 503: the stale response
        is served; without stale-if-error the 503 goes to the client."""
        a, b = self.p("a"), self.p("b")
        self.script(a, [self.stale_resp(b"still here", "stale-if-error=600"), Resp(503, [], b"down")])
        self.script(b, [self.stale_resp(b"gone"), Resp(503, [], b"down")])
        self.req(a)
        r = self.req(a)
        self.assertEqual((r.status, r.body), (200, b"still here"), self.describe(r))
        self.assertOriginCount(a, 2, "the stale entry must be revalidated first")
        self.assertEqual(weir_member(r)[1].get("detail"), "stale-if-error", self.describe(r))
        self.req(b)
        r = self.req(b)
        self.assertEqual(r.status, 503, "without stale-if-error the error goes through")

    def test_rfc5861_s4_stale_if_error_origin_down(self):
        """RFC 5861 §4: stale-if-error and the origin unreachable (connection refused): the
        stale response is served."""
        path = "/down/" + self._testMethodName
        self.flaky.script(path, self.stale_resp(b"from the store", "stale-if-error=600"))
        self.assertEqual(self.req(path).body, b"from the store")
        self.flaky.stop()
        r = self.req(path)
        self.assertEqual((r.status, r.body), (200, b"from the store"), self.describe(r))
        self.assertIn("stale-if-error", cache_status(r))

    def test_rfc5861_s3_stale_while_revalidate_answers_at_once(self):
        """RFC 5861 §3 (edge.md lists stale-while-revalidate): a stale entry within its
        stale-while-revalidate window is answered at once while weir revalidates in the
        background (the RFC says MAY; edge.md says weir does). The origin takes 1.5 s."""
        path = self.p()
        self.script(path, [self.stale_resp(b"swr", "stale-while-revalidate=600"),
                           Resp(200, [FRESH, ("ETag", '"v1"')], b"swr", delay=1.5)])
        self.req(path)
        t0 = time.monotonic()
        r = self.req(path)
        took = time.monotonic() - t0
        self.assertEqual((r.status, r.body), (200, b"swr"))
        wait_until(lambda: self.count(path) == 2, 5, what="the background revalidation")
        self.assertLess(took, 1.0, f"the stale answer waited {took:.2f}s for the revalidation")

    # -- §4.4 invalidation

    def test_s4_4_unsafe_method_invalidates_uri(self):
        """RFC 9111 §4.4: a POST answered 2xx invalidates the stored responses of its URI."""
        path = self.p()
        self.script(path, lambda req, i: Resp(200, [FRESH], f"{req.method} {i}".encode()))
        self.assertEqual(self.req(path).body, b"GET 0")
        self.assertEqual(self.req(path).body, b"GET 0")
        self.assertEqual(self.req(path, method="POST", body=b"x").status, 200)
        self.assertEqual(self.req(path).body, b"GET 2", "the POST must invalidate the URI")
        self.assertOriginCount(path, 2, "GETs at the origin", method="GET")

    def test_s4_4_location_and_content_location_invalidated(self):
        """RFC 9111 §4.4: an unsafe request's Location and Content-Location URIs of the same
        origin are invalidated too; another origin's are not."""
        post, put = self.p("post"), self.p("put")
        loc, cloc, other = self.p("loc"), self.p("cloc"), self.p("other")
        for target in (loc, cloc, other):
            self.script(target, lambda req, i: Resp(200, [FRESH], f"v{i}".encode()))
        self.script(post, Resp(201, [("Location", loc)], b""))
        self.script(put, Resp(200, [("Content-Location", f"http://{HOSTNAME}{cloc}"),
                                    ("Location", f"http://other.test{other}")], b""))
        for target in (loc, cloc):
            self.req(target)
        self.req(other, host="other.test")
        self.assertHit(self.req(loc))
        self.assertEqual(self.req(post, method="POST", body=b"{}").status, 201)
        self.assertEqual(self.req(loc).body, b"v1", "Location (relative, same origin) must be invalidated")
        self.assertEqual(self.req(put, method="PUT", body=b"{}").status, 200)
        self.assertEqual(self.req(cloc).body, b"v1", "Content-Location (same origin) must be invalidated")
        r = self.req(other, host="other.test")
        self.assertEqual(r.body, b"v0", "another origin's URI must not be invalidated")
        self.assertHit(r)

    def test_s4_4_failed_unsafe_method_does_not_invalidate(self):
        """RFC 9111 §4.4: only a non-error answer invalidates: a POST answered 500 does not."""
        path = self.p()
        self.script(path, lambda req, i: (Resp(500, [], b"fail") if req.method == "POST"
                                          else Resp(200, [FRESH], b"kept")))
        self.req(path)
        self.assertEqual(self.req(path, method="POST", body=b"x").status, 500)
        r = self.req(path)
        self.assertHit(r, "a failed POST must not invalidate")
        self.assertOriginCount(path, 1, "GETs at the origin", method="GET")

    # -- §4.3.2 client conditionals, §4.3.5 HEAD

    def store(self, path: str, body: bytes, headers) -> None:
        self.script(path, Resp(200, [FRESH] + list(headers), body))
        self.assertEqual(self.req(path).body, body)

    def test_s4_3_2_if_none_match_answered_304_from_store(self):
        """RFC 9111 §4.3.2: If-None-Match naming the stored ETag: 304 from the store, no origin
        contact; a non-matching one: the stored 200."""
        path = self.p()
        self.store(path, b"etagged", [("ETag", '"abc"')])
        r = self.req(path, [("If-None-Match", '"abc"')])
        self.assertEqual(r.status, 304, self.describe(r))
        self.assertEqual(r.header("ETag"), '"abc"')
        r = self.req(path, [("If-None-Match", '"zzz", W/"yyy"')])
        self.assertEqual((r.status, r.body), (200, b"etagged"))
        self.assertOriginCount(path, 1, "client conditionals must be answered from the store")

    def test_s4_3_2_if_modified_since_answered_304_from_store(self):
        """RFC 9111 §4.3.2: If-Modified-Since at or after the stored Last-Modified: 304 from the
        store; an earlier date: the stored 200."""
        path = self.p()
        lm = http_date(-3600)
        self.store(path, b"dated", [("Last-Modified", lm)])
        r = self.req(path, [("If-Modified-Since", lm)])
        self.assertEqual(r.status, 304, self.describe(r))
        r = self.req(path, [("If-Modified-Since", http_date(-7200))])
        self.assertEqual((r.status, r.body), (200, b"dated"))
        self.assertOriginCount(path, 1, "client conditionals must be answered from the store")

    def test_s4_3_2_range_answered_206_from_store(self):
        """RFC 9111 §4.3.2, RFC 9110 §14: Range bytes=0-4 on a stored full response: 206 with
        Content-Range, from the store."""
        path = self.p()
        body = b"abcdefghijklmnopqrstuvwxyz"
        self.store(path, body, [])
        r = self.req(path, [("Range", "bytes=0-4")])
        self.assertEqual((r.status, r.body), (206, b"abcde"), self.describe(r))
        self.assertEqual(r.header("Content-Range"), f"bytes 0-4/{len(body)}")
        r = self.req(path, [("Range", "bytes=-3")])
        self.assertEqual((r.status, r.body, r.header("Content-Range")), (206, b"xyz", "bytes 23-25/26"))
        self.assertOriginCount(path, 1, "ranges must be answered from the store")

    def test_s4_3_2_unsatisfiable_range_answered_416(self):
        """RFC 9110 §14.1.2, §15.5.17: a range beyond the stored body: 416 with
        Content-Range: bytes */LEN, from the store."""
        path = self.p()
        self.store(path, b"short", [])
        r = self.req(path, [("Range", "bytes=100-200")])
        self.assertEqual(r.status, 416, self.describe(r))
        self.assertEqual(r.header("Content-Range"), "bytes */5")
        self.assertOriginCount(path, 1, "answered from the store")

    def test_s4_3_5_head_answered_from_stored_get(self):
        """RFC 9111 §4.3.5 / RFC 9110 §9.3.2: HEAD of a stored GET: 200, the GET's
        Content-Length, no body, no origin contact."""
        path = self.p()
        body = b"head me" * 100
        self.store(path, body, [("Content-Type", "text/plain")])
        with HttpConn(self.port) as c:
            r = c.request("HEAD", path, host=HOSTNAME)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("Content-Length"), str(len(body)))
            self.assertEqual(r.header("Content-Type"), "text/plain")
            r2 = c.get(path, host=HOSTNAME)  # the connection is still in step: no body was sent
            self.assertEqual(r2.body, body)
        self.assertHit(r)
        self.assertOriginCount(path, 1, "HEAD must be answered from the stored GET")

    # -- RFC 9211

    def test_rfc9211_s2_cache_status(self):
        """RFC 9211 §2: every GET answer on a cache route has a Cache-Status member naming weir:
        hit on hits, fwd=<reason> when forwarded, stored when stored, fwd-status after a
        revalidation."""
        stored, nostore, stale = self.p("stored"), self.p("nostore"), self.p("stale")
        self.script(stored, Resp(200, [FRESH], b"s"))
        self.script(nostore, Resp(200, [("Cache-Control", "no-store")], b"n"))
        self.script(stale, self.stale_resp(b"st"))
        cases = []
        r = self.req(stored)
        cases.append(("miss, stored", r, {"fwd": "uri-miss", "stored": True}))
        cases.append(("hit", self.req(stored), {"hit": True}))
        cases.append(("not storable", self.req(nostore), {"fwd": "uri-miss"}))
        self.req(stale)
        cases.append(("revalidated", self.req(stale), {"fwd": "stale", "fwd-status": "304"}))
        self.script(stored, Resp(200, [FRESH, ("ETag", '"s"')], b"s"))
        cases.append(("304 from the store", self.req(stored, [("If-None-Match", "*")]), {"hit": True}))
        cases.append(("206 from the store", self.req(stored, [("Range", "bytes=0-0")]), {"hit": True}))
        for what, r, want in cases:
            with self.subTest(what=what):
                m = weir_member(r)
                self.assertIsNotNone(m, f"no 'weir' member in Cache-Status: {self.describe(r)}")
                self.assertTrue(cache_status(r).startswith("weir;") or cache_status(r) == "weir")
                for k, v in want.items():
                    self.assertEqual(m[1].get(k), v, f"{k}: {self.describe(r)}")
                if what == "not storable":
                    self.assertNotIn("stored", m[1])
                    self.assertNotIn("hit", m[1])

    def test_rfc9211_s2_cache_status_on_weirs_own_answers(self):
        """RFC 9211 §2 (which leaves it to the cache) and edge.md: Cache-Status names weir on
        every answer of a cache route, weir's own included: the 504 of only-if-cached, the 416
        of an unsatisfiable range from the store, and a POST (fwd=method, RFC 9211 §2.2)."""
        path = self.p()
        self.store(path, b"abc", [])
        cases = [("504 only-if-cached", self.req(self.p("none"), [("Cache-Control", "only-if-cached")])),
                 ("416 from the store", self.req(path, [("Range", "bytes=10-20")])),
                 ("POST", self.req(path, method="POST", body=b"x"))]
        missing = [f"{what}: {r.status} {r.headers}" for what, r in cases if weir_member(r) is None]
        self.assertEqual(missing, [], "answers of a cache route without a Cache-Status naming weir")

    # -- coalescing

    def test_edge_coalescing_one_origin_request_for_50_clients(self):
        """edge.md (request coalescing): 50 concurrent misses for one URI whose origin takes
        0.5 s send one request to the origin; all 50 clients get its body."""
        path = self.p()
        body = b"coalesced\n" * 50
        self.script(path, Resp(200, [FRESH], body, delay=0.5))
        barrier = threading.Barrier(50)

        def one(i):
            with HttpConn(self.port) as c:
                barrier.wait(10)
                return c.get(path, host=HOSTNAME)

        results = run_threads(one, 50, timeout=30)
        bad = [r for r in results if r.status != 200 or r.body != body]
        self.assertEqual(bad, [], "every client must get the origin's 200 and body")
        self.assertOriginCount(path, 1, "concurrent misses must be coalesced into one request")


class HostileVaryTest(WeirTestCase):
    """edge.md "Cache" bounds + RFC 9111 §4.1: a client that makes one URI vary 10,000 ways
    (Vary: X-Key, every request a new X-Key, 4 KiB each: 40 MB offered to an 8 MiB cache) gets
    200s; weir's anonymous RSS grows by at most the cache's memory + 40 MiB (ASan's quarantine
    (16 MiB, tlstest sets it) and shadow, allocator slack); the cache still stores and serves
    other URIs; weir_cache_bytes stays within the bound; Vary: * responses are not stored."""

    MEMORY = 8 * MIB
    MARGIN = 40 * MIB
    N = 10_000
    BATCH = 50  # pipelined requests per write

    def test_10000_vary_values_stay_within_memory(self):
        origin = Origin()
        self.addCleanup(origin.stop)
        piece = b"v" * 4096
        origin.script("/vary", lambda req, i: Resp(200, [("Cache-Control", "max-age=600"),
                                                         ("Vary", "X-Key")],
                                                   req.header("x-key", "").encode() + piece))
        origin.script("/other", Resp(200, [FRESH], b"other"))
        origin.script("/warm", Resp(200, [("Cache-Control", "no-store")], piece))
        origin.script("/star", Resp(200, [("Cache-Control", "max-age=600"), ("Vary", "*")], piece))
        port = free_port()
        routes = [{"match": {"path_prefix": "/"}, "cache": "edge", "backend": "origin"}]
        backends = [{"name": "origin", "servers": [{"address": origin.address}]}]
        cfg = cache_config(port, routes, backends, memory="8MiB")
        cfg["admin"] = {"listen": f"127.0.0.1:{free_port()}"}
        lb = self.start_weir(cfg)

        def run(path: str, n: int, key, check_key: bool = True) -> float:
            t0 = time.monotonic()
            with HttpConn(port, timeout=30) as c:
                for start in range(0, n, self.BATCH):
                    k = min(self.BATCH, n - start)
                    c.send(b"".join(build_request("GET", path, [("X-Key", key(start + j))], None, HOSTNAME)
                                    for j in range(k)))
                    for j in range(k):
                        r = c.read_response()
                        if r.status != 200 or (check_key and not r.body.startswith(key(start + j).encode())):
                            raise AssertionError(f"request {start + j} to {path}: {r!r} {r.body[:40]!r}")
            return time.monotonic() - t0

        run("/warm", 500, lambda i: f"w{i}", check_key=False)  # the allocator's and ASan's warm-up
        before = rss_anon(lb.pid)
        took = run("/vary", self.N, lambda i: f"k{i:05d}")
        after = rss_anon(lb.pid)
        growth = after - before
        print(f"\n{self.N} Vary values in {took:.1f}s: weir RssAnon {before / MIB:.1f} -> "
              f"{after / MIB:.1f} MiB (+{growth / MIB:.1f})")
        self.assertLessEqual(growth, self.MEMORY + self.MARGIN,
                             f"weir grew by {growth / MIB:.1f} MiB for an {self.MEMORY // MIB} MiB cache")
        m = lb.metrics()
        held = m.get("weir_cache_bytes", cache="edge")
        self.assertLessEqual(held, self.MEMORY, "weir_cache_bytes above the cache's memory")
        # Vary: * is never stored (RFC 9111 §4.1), however often it comes.
        entries = m.get("weir_cache_entries", cache="edge")
        run("/star", 200, lambda i: f"s{i}", check_key=False)
        self.assertEqual(origin.count("/star"), 200, "a Vary: * response must never be reused")
        self.assertEqual(lb.metrics().get("weir_cache_entries", cache="edge"), entries,
                         "a Vary: * response must not be stored")
        # Still a working cache: another URI is stored and reused; a recent variant is served.
        for _ in range(2):
            r = http_request(port, "GET", "/other", host=HOSTNAME)
            self.assertEqual(r.body, b"other")
        self.assertEqual(origin.count("/other"), 1, "the cache must still store other URIs")
        self.assertIn("hit", cache_status(r))
        last = f"k{self.N - 1:05d}"
        r = http_request(port, "GET", "/vary", [("X-Key", last)], host=HOSTNAME)
        self.assertEqual((r.status, r.body[:6]), (200, last.encode()))


if __name__ == "__main__":
    unittest.main()
