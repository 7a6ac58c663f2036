"""HTTP/2 attacks, with raw frames: rapid reset (CVE-2023-44487, over h2c and TLS), CONTINUATION
flood (CVE-2024-27316), SETTINGS and PING floods from a client that never reads, empty DATA,
WINDOW_UPDATE and PRIORITY floods, an HPACK bomb, and more concurrent streams than allowed.

For each: weir cuts the attacking connection within a bounded number of frames, with what
README.md promises: GOAWAY(ENHANCE_YOUR_CALM) for rapid reset and every flood, GOAWAY
(PROTOCOL_ERROR) for a client going past the acknowledged stream limit, 431 for a header list
over max_header_bytes. (A flooding client that never reads cannot see a GOAWAY: there weir's
log line and weir_h2_abusive_connections_total, both written where weir sends
GOAWAY(ENHANCE_YOUR_CALM), show it, and a reading variant of the same flood sees the code.)
A second, well-behaved client (curl, a new connection per request) keeps getting 200 within
NORMAL_BOUND seconds during and after the attack, weir holds no more buffer blocks than the
design allows one hostile connection, its RSS high-water mark grows by less than RSS_BUDGET,
and weir lives on. Attacks go to /attack/..., routed to their own backend,
so that the tests can tell whether an attack request reached a server."""

import unittest

from tlstest import (END_HEADERS, END_STREAM, ENHANCE_YOUR_CALM, HEADERS, PROTOCOL_ERROR, S_HEADER_TABLE_SIZE,
                     S_MAX_CONCURRENT_STREAMS, H2Conn, NormalTraffic, PeakRss, TlsTestCase,
                     attack_continuation_flood, attack_empty_data_flood, attack_ping_flood, attack_priority_flood,
                     attack_rapid_reset, attack_settings_flood, attack_window_update_flood, err_name, flood, frame,
                     h2_conn_blocks, hpack_bomb_block, ping_frame, request_headers, settings_frame, static_block,
                     weir_alive)
from weirtest import BufferWatch, find_server, wait_until


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

    def abusive(self) -> float:
        return self.lb.metrics().get("weir_h2_abusive_connections_total")

    def under_attack(self, what, attack, tls=False, conn_kw=None):
        """Runs attack(conn) on a new connection while a normal client keeps requesting; checks
        the normal client, weir's memory and life. Returns (result, conn); self.abuse_delta is
        how much weir_h2_abusive_connections_total grew."""
        normal = self.normal_traffic(tls)
        normal.wait_count(2)
        peak = PeakRss(self.lb.pid)
        abusive_before = self.abusive()
        watch = BufferWatch(self.lb.admin_port)
        self.addCleanup(watch.close)
        conn = self.conn(tls, **(conn_kw or {}))
        res = attack(conn)
        print(f"\n{what}: {res!r}; {conn.describe()}")
        conn.close()
        # Counted when weir decides to cut (before its GOAWAY or close): no wait needed, but a
        # moment's grace costs nothing when it is right and keeps a miss unambiguous.
        try:
            wait_until(lambda: self.abusive() > abusive_before, 2, what="the abuse counter")
        except AssertionError:
            pass
        self.abuse_delta = self.abusive() - abusive_before
        # The designed bound (docs/ARCHITECTURE.md): one hostile HTTP/2 connection holds at most
        # h2_conn_blocks() = 266 blocks with the default limits (≈ 4.2 MiB of 16 KiB blocks);
        # the normal client's connection (one GET stream at a time) 3 more.
        blocks = watch.stop()
        bound = h2_conn_blocks() + h2_conn_blocks(streams=1, uploading=0)
        print(f"{what}: at most {blocks} buffer blocks held ({watch.samples} samples; designed bound {bound})")
        self.assertLessEqual(blocks, bound, f"{what}: buffer blocks held")
        # Still served afterwards, on new connections.
        normal.wait_count(len(normal.results) + len(normal.errors) + 3, timeout=30)
        normal.check(self, min_count=5, what=f"during/after {what}")
        peak.check(self, what=what)
        weir_alive(self, self.lb)
        c = self.conn(tls)
        self.assertEqual(c.get("/after").status, 200, c.describe())
        return res, conn

    def assertCalmedDown(self, res, conn, what: str):
        """README.md: hostile HTTP/2 clients are cut with GOAWAY(ENHANCE_YOUR_CALM), counted once
        in weir_h2_abusive_connections_total."""
        self.assertCut(res, conn, what)
        self.assertIsNotNone(res.goaway, f"{what}: weir closed without GOAWAY(ENHANCE_YOUR_CALM): {res!r}; "
                                         f"{conn.describe()}")
        self.assertEqual(res.goaway[1], ENHANCE_YOUR_CALM,
                         f"{what}: GOAWAY {err_name(res.goaway[1])}, README.md promises ENHANCE_YOUR_CALM")
        self.assertEqual(self.abuse_delta, 1, f"{what}: weir_h2_abusive_connections_total")

    def assertCalmedDownUnseen(self, res, conn, what: str, frames: str):
        """A flooding client that never reads cannot see the GOAWAY (it sits behind the ACKs the
        client never reads, and weir's close with unread flood bytes resets the connection): that
        weir sent GOAWAY(ENHANCE_YOUR_CALM) shows in its log line and abuse counter, written by
        the one code path that sends it. If a GOAWAY does arrive, it carries that code."""
        self.assertCut(res, conn, what)
        if res.goaway is not None:
            self.assertEqual(res.goaway[1], ENHANCE_YOUR_CALM,
                             f"{what}: GOAWAY {err_name(res.goaway[1])}, README.md promises ENHANCE_YOUR_CALM")
        self.assertEqual(self.abuse_delta, 1, f"{what}: weir_h2_abusive_connections_total")
        # weir's own budget for these frames, or nghttp2's limit of unread ACKs (1000), whichever
        # comes first: both end in the same calm_down.
        self.lb.proc.wait_log(rf"HTTP/2: ({frames} frames|flood of frames that need an answer it "
                              rf"does not read); sending GOAWAY and closing")

    # ---- rapid reset

    def rapid_reset(self, tls):
        what = f"rapid reset over {'TLS' if tls else 'h2c'}"
        res, conn = self.under_attack(what, lambda c: attack_rapid_reset(c, "/attack/rr", max_streams=10000), tls)
        self.assertCalmedDown(res, conn, what)
        self.assertLess(res.frames, 10000)
        print(f"{what}: {self.attack_requests()} of the reset streams reached the backend")

    def test_rapid_reset_h2c(self):
        self.rapid_reset(tls=False)

    def test_rapid_reset_tls(self):
        self.rapid_reset(tls=True)

    # ---- floods

    def test_continuation_flood(self):
        res, conn = self.under_attack("CONTINUATION flood", lambda c: attack_continuation_flood(c, 10_000_000))
        self.assertCalmedDown(res, conn, "CONTINUATION flood")
        self.assertLess(res.bytes, 10_000_000)
        self.assertEqual(self.attack_requests(), 0)

    def test_continuation_flood_tls(self):
        res, conn = self.under_attack("CONTINUATION flood over TLS",
                                      lambda c: attack_continuation_flood(c, 10_000_000), tls=True)
        self.assertCalmedDown(res, conn, "CONTINUATION flood over TLS")

    def test_settings_flood_never_reading(self):
        # A small receive buffer: weir's ACKs back up soon; it must not queue them without end.
        res, conn = self.under_attack("SETTINGS flood", lambda c: attack_settings_flood(c, 2_000_000),
                                      conn_kw={"rcvbuf": 4096})
        self.assertCalmedDownUnseen(res, conn, "SETTINGS flood", "SETTINGS")

    def test_ping_flood_never_reading(self):
        res, conn = self.under_attack("PING flood", lambda c: attack_ping_flood(c, 2_000_000),
                                      conn_kw={"rcvbuf": 4096})
        self.assertCalmedDownUnseen(res, conn, "PING flood", "PING")

    def test_settings_flood_reading(self):
        # The same flood from a client that reads (and so sees the GOAWAY's code).
        one = settings_frame({S_HEADER_TABLE_SIZE: 4096})
        res, conn = self.under_attack("SETTINGS flood, reading", lambda c: flood(c, one * 200, 200, 1_000_000))
        self.assertCalmedDown(res, conn, "SETTINGS flood, reading")

    def test_ping_flood_reading(self):
        one = ping_frame(b"weirping")
        res, conn = self.under_attack("PING flood, reading", lambda c: flood(c, one * 200, 200, 1_000_000))
        self.assertCalmedDown(res, conn, "PING flood, reading")

    def test_empty_data_flood(self):
        res, conn = self.under_attack("empty DATA flood", lambda c: attack_empty_data_flood(c, 100_000))
        self.assertCalmedDown(res, conn, "empty DATA flood")

    def test_window_update_flood(self):
        res, conn = self.under_attack("WINDOW_UPDATE flood", lambda c: attack_window_update_flood(c, 100_000))
        self.assertCalmedDown(res, conn, "WINDOW_UPDATE flood")

    def test_priority_flood(self):
        res, conn = self.under_attack("PRIORITY flood", lambda c: attack_priority_flood(c, 100_000))
        self.assertCalmedDown(res, conn, "PRIORITY flood")

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
        # README.md: header lists over max_header_bytes get 431 (the bomb decodes to ~40 MB).
        self.assertEqual(st.status, 431, f"the HPACK bomb was not refused with 431: {st!r}, {conn.describe()}")
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
        c.run_until(lambda: c.goaway is not None or c.closed, 30)
        # README.md: a client going past the acknowledged stream limit gets GOAWAY(PROTOCOL_ERROR)
        # (the client had acknowledged the limit: nghttp2 treats going past it as a connection
        # error; RFC 9113 §5.1.2 also allows a stream error, but weir promises the GOAWAY).
        # Nothing beyond the limit reaches a server.
        self.assertIsNotNone(c.goaway, f"no GOAWAY(PROTOCOL_ERROR) for {limit + extra} streams over a limit of "
                                       f"{limit}: {c.describe()}")
        self.assertEqual(c.goaway[1], PROTOCOL_ERROR,
                         f"GOAWAY {err_name(c.goaway[1])}, README.md promises PROTOCOL_ERROR; {c.describe()}")
        self.assertLessEqual(c.goaway[0], sids[limit - 1], c.describe())
        # The streams weir took (at most the limit) are the only ones that may reach the server;
        # wait until those have ended there (they are cut with the connection, or answered).
        self.assertLessEqual(self.attack_requests(), limit)
        wait_until(lambda: find_server(self.lb.backends(), "attack", "target")["active_requests"] == 0, 10,
                   what="the streams weir took to end at the server")
        self.assertLessEqual(self.attack_requests(), limit)
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
