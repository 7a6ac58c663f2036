"""HTTP/2 attacks, with raw frames: rapid reset (CVE-2023-44487, over h2c and TLS), CONTINUATION
flood (CVE-2024-27316), SETTINGS and PING floods from a client that never reads, empty DATA,
WINDOW_UPDATE and PRIORITY floods, an HPACK bomb, and more concurrent streams than allowed.

For each: weir cuts the attacking connection (GOAWAY or close) within a bounded number of
frames, a second, well-behaved client (curl, a new connection per request) keeps getting 200
within NORMAL_BOUND seconds during and after the attack, weir's RSS high-water mark grows by
less than RSS_BUDGET, and weir lives on. Attacks go to /attack/..., routed to their own backend,
so that the tests can tell whether an attack request reached a server."""

import unittest

from tlstest import (END_HEADERS, END_STREAM, ENHANCE_YOUR_CALM, HEADERS, NO_ERROR, PROTOCOL_ERROR,
                     REFUSED_STREAM, S_MAX_CONCURRENT_STREAMS, H2Conn, NormalTraffic, PeakRss, TlsTestCase,
                     attack_continuation_flood, attack_empty_data_flood, attack_ping_flood, attack_priority_flood,
                     attack_rapid_reset, attack_settings_flood, attack_window_update_flood, err_name, frame,
                     hpack_bomb_block, request_headers, static_block, weir_alive)


class H2AttackTest(TlsTestCase):
    def setUp(self):
        super().setUp()
        self._lb = None

    @property
    def lb(self):
        return self._lb or self.start_lb_with()

    def start_lb_with(self, limits=None):
        web = self.start_whoami("web")
        target = self.start_whoami("target")
        backends = [{"name": "web", "servers": [{"address": web.address, "name": "web-1"}]},
                    {"name": "attack", "servers": [{"address": target.address, "name": "target"}]}]
        routes = [{"match": {"path_prefix": "/attack/"}, "backend": "attack"}, {"backend": "web"}]
        self._lb = self.start_tls_lb(backends=backends, routes=routes, limits=limits)
        return self._lb

    def attack_requests(self) -> int:
        return self.lb.requests("attack")

    def conn(self, tls=False, **kw) -> H2Conn:
        port = self.lb.https_port if tls else self.lb.plain_port
        c = H2Conn(port, tls=tls, cafile=self.certs.ca if tls else None, **kw)
        self.addCleanup(c.close)
        return c

    def normal_traffic(self, tls) -> NormalTraffic:
        if tls:
            n = NormalTraffic(self.lb.url("/normal"), "--http2", resolve=self.lb.resolve(), cacert=self.certs.ca)
        else:
            n = NormalTraffic(self.lb.plain_url("/normal"), "--http2-prior-knowledge")
        self.addCleanup(n.stop)
        return n.start()

    def under_attack(self, what, attack, tls=False, conn_kw=None):
        """Runs attack(conn) on a new connection while a normal client keeps requesting; checks
        the normal client, weir's memory and life. Returns (result, conn)."""
        normal = self.normal_traffic(tls)
        normal.wait_count(2)
        peak = PeakRss(self.lb.pid)
        conn = self.conn(tls, **(conn_kw or {}))
        res = attack(conn)
        print(f"\n{what}: {res!r}; {conn.describe()}")
        conn.close()
        # Still served afterwards, on new connections.
        normal.wait_count(len(normal.results) + len(normal.errors) + 3, timeout=30)
        normal.check(self, min_count=5, what=f"during/after {what}")
        peak.check(self, what=what)
        weir_alive(self, self.lb)
        c = self.conn(tls)
        self.assertEqual(c.get("/after").status, 200, c.describe())
        return res, conn

    # ---- rapid reset

    def rapid_reset(self, tls):
        what = f"rapid reset over {'TLS' if tls else 'h2c'}"
        res, conn = self.under_attack(what, lambda c: attack_rapid_reset(c, "/attack/rr", max_streams=10000), tls)
        self.assertCut(res, conn, what)
        self.assertLess(res.frames, 10000)
        if res.goaway is not None:
            self.assertNotEqual(res.goaway[1], NO_ERROR, f"GOAWAY {err_name(res.goaway[1])}")
            if res.goaway[1] != ENHANCE_YOUR_CALM:
                print(f"note: GOAWAY {err_name(res.goaway[1])}, ENHANCE_YOUR_CALM expected")
        print(f"{what}: {self.attack_requests()} of the reset streams reached the backend")

    def test_rapid_reset_h2c(self):
        self.rapid_reset(tls=False)

    def test_rapid_reset_tls(self):
        self.rapid_reset(tls=True)

    # ---- floods

    def test_continuation_flood(self):
        res, conn = self.under_attack("CONTINUATION flood", lambda c: attack_continuation_flood(c, 10_000_000))
        self.assertCut(res, conn, "CONTINUATION flood")
        self.assertLess(res.bytes, 10_000_000)
        self.assertEqual(self.attack_requests(), 0)

    def test_continuation_flood_tls(self):
        res, conn = self.under_attack("CONTINUATION flood over TLS",
                                      lambda c: attack_continuation_flood(c, 10_000_000), tls=True)
        self.assertCut(res, conn, "CONTINUATION flood over TLS")

    def test_settings_flood_never_reading(self):
        # A small receive buffer: weir's ACKs back up soon; it must not queue them without end.
        res, conn = self.under_attack("SETTINGS flood", lambda c: attack_settings_flood(c, 2_000_000),
                                      conn_kw={"rcvbuf": 4096})
        self.assertCut(res, conn, "SETTINGS flood")

    def test_ping_flood_never_reading(self):
        res, conn = self.under_attack("PING flood", lambda c: attack_ping_flood(c, 2_000_000),
                                      conn_kw={"rcvbuf": 4096})
        self.assertCut(res, conn, "PING flood")

    def test_empty_data_flood(self):
        res, conn = self.under_attack("empty DATA flood", lambda c: attack_empty_data_flood(c, 100_000))
        self.assertCut(res, conn, "empty DATA flood")

    def test_window_update_flood(self):
        res, conn = self.under_attack("WINDOW_UPDATE flood", lambda c: attack_window_update_flood(c, 100_000))
        self.assertCut(res, conn, "WINDOW_UPDATE flood")

    def test_priority_flood(self):
        res, conn = self.under_attack("PRIORITY flood", lambda c: attack_priority_flood(c, 100_000))
        self.assertCut(res, conn, "PRIORITY flood")

    # ---- HPACK bomb

    def test_hpack_bomb(self):
        sid = {}

        def bomb(c):
            c.wait_settings()
            sid["s"] = s = c.new_sid()
            c.send(c.headers_frames(s, hpack_bomb_block(c, "/attack/bomb"), True))
            c.run_until(lambda: c.stream(s).done or c.goaway is not None or c.closed, 15)
            return c.stream(s)

        st, conn = self.under_attack("HPACK bomb (4 KiB field referenced 10,000 times)", bomb)
        refused = (st.reset is not None or (st.status is not None and 400 <= st.status < 500)
                   or conn.goaway is not None or conn.closed)
        self.assertTrue(refused, f"the HPACK bomb was not refused: {st!r}, {conn.describe()}")
        self.assertNotEqual(st.status, 200)
        self.assertEqual(self.attack_requests(), 0, "the HPACK bomb reached the backend")

    # ---- concurrent streams

    def too_many_streams(self, limit, tls=False):
        c = self.conn(tls)
        self.assertTrue(c.wait_settings(), c.describe())
        self.assertEqual(c.peer_settings.get(S_MAX_CONCURRENT_STREAMS), limit,
                         f"SETTINGS_MAX_CONCURRENT_STREAMS: {c.peer_settings}")
        block = static_block(request_headers("/attack/conc?delay=1s", authority=c.authority, scheme=c.scheme))
        extra = limit // 2
        sids = [c.new_sid() for _ in range(limit + extra)]
        c.send(b"".join(frame(HEADERS, END_STREAM | END_HEADERS, s, block) for s in sids))
        c.run_until(lambda: c.goaway is not None or c.closed or all(c.stream(s).done for s in sids), 30)
        if c.goaway is not None:
            # The client had acknowledged the limit: nghttp2 treats going past it as a connection
            # error (RFC 9113 §5.1.2 also allows a stream error). The violating connection is cut
            # with GOAWAY(PROTOCOL_ERROR); nothing beyond the limit reaches a server.
            self.assertEqual(c.goaway[1], PROTOCOL_ERROR, c.describe())
            self.assertLessEqual(c.goaway[0], sids[limit - 1], c.describe())
            self.assertLessEqual(self.attack_requests(), limit)
            weir_alive(self, self.lb)
            return
        first, rest = [c.stream(s) for s in sids[:limit]], [c.stream(s) for s in sids[limit:]]
        self.assertEqual([s for s in first if s.status != 200 or not s.ended], [],
                         f"the first {limit} streams were not all answered; {c.describe()}")
        self.assertEqual([s for s in rest if s.reset not in (REFUSED_STREAM, PROTOCOL_ERROR)], [],
                         f"streams beyond {limit} were not refused with RST_STREAM; {c.describe()}")
        self.assertEqual(self.attack_requests(), limit)
        # The connection is still usable.
        if c.goaway is None and not c.closed:
            self.assertEqual(c.get("/after").status, 200)
        weir_alive(self, self.lb)

    def test_more_than_100_concurrent_streams(self):
        self.too_many_streams(100)

    def test_more_than_100_concurrent_streams_tls(self):
        self.too_many_streams(100, tls=True)

    def test_concurrent_streams_limit_from_config(self):
        self.start_lb_with(limits={"h2_max_concurrent_streams": 10})
        self.too_many_streams(10)


if __name__ == "__main__":
    unittest.main()
