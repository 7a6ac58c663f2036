"""Hostile HTTP/3 clients, with weir_h3_attack (tests/tools/h3_attack.cpp: ngtcp2 + nghttp3, one
QUIC connection, a JSON summary of what it sent and what came back): a sanity run of plain GETs;
rapid reset (CVE-2023-44487 over HTTP/3: request streams opened and cancelled at once, as fast as
stream credit allows); more streams than h3_max_concurrent_streams; a header section over
limits.max_header_bytes; a reader that never opens its stream window while a big response waits.

For each: what weir did to the attacking connection (its close code, resets, statuses), what
reached the backend (attacks go to /attack/..., routed to a backend of their own), weir's buffer
blocks and RSS high-water mark, that a well-behaved client (gtlsclient) is served during and after,
and that weir lives on. Every figure is printed.

Needs the weir_h3_attack binary ($WEIR_H3_ATTACK, which CTest sets; else tests/weir_h3_attack in
the build folder of $WEIR_BIN), gtlsclient and python3-cryptography (Http3Case); under CI=true it
fails rather than skips without them."""

import json
import os
import threading
import time
import unittest

import quictest as q
from quictest import Http3Case
from tlstest import MB, PeakRss, run, weir_alive
from weirtest import WEIR_BIN, BufferWatch, buffers, find_server, require, wait_until

H3_ATTACK = os.path.abspath(os.environ.get("WEIR_H3_ATTACK") or
                            os.path.join(os.path.dirname(WEIR_BIN), "tests", "weir_h3_attack"))
H3_EXCESSIVE_LOAD = 0x107
H3_NO_ERROR = 0x100
H3_REQUEST_CANCELLED = 0x10C
H3_REQUEST_REJECTED = 0x10B


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class H3Normal:
    """A thread running gtlsclient GETs one after the other (a new QUIC connection each): the
    well-behaved client beside an attack. check(): every one got 200."""

    def __init__(self, port: int, path: str = "/normal"):
        self.port, self.path = port, path
        self.results: list = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        n = 0
        while not self._stop.is_set():
            try:
                self.results.append(q.gtls(self.port, f"{self.path}?n={n}", timeout=20, in_thread=True))
            except Exception as e:  # noqa: BLE001 - reported by check()
                self.errors.append(repr(e))
            n += 1
            self._stop.wait(0.05)

    def start(self):
        self._thread.start()
        return self

    def wait_count(self, n: int, timeout: float = 30.0):
        wait_until(lambda: len(self.results) + len(self.errors) >= n, timeout, 0.05, f"{n} normal HTTP/3 requests")

    def stop(self):
        self._stop.set()
        self._thread.join(40)

    def check(self, tc, what: str, min_count: int = 2):
        self.stop()
        tc.assertEqual(self.errors, [], f"normal HTTP/3 client errors {what}")
        bad = [r for r in self.results if not r.all_ok(1) or r.statuses != [200]]
        if bad:
            tc.fail(f"{len(bad)}/{len(self.results)} normal HTTP/3 requests failed {what}; the first:\n"
                    f"{bad[0].describe()}")
        tc.assertGreaterEqual(len(self.results), min_count, f"too few normal HTTP/3 requests ran {what}")
        slowest = max(r.elapsed for r in self.results)
        print(f"normal HTTP/3 client {what}: {len(self.results)} GETs, all 200, slowest {slowest:.2f}s")


class Http3HostileTest(Http3Case):
    def setUp(self):
        super().setUp()
        require(os.access(H3_ATTACK, os.X_OK), f"{H3_ATTACK} not built: ninja weir_h3_attack (or set WEIR_H3_ATTACK)",
                self)

    def start(self, limits=None, workers=1):
        web = self.start_whoami("web")
        target = self.start_whoami("target")
        backends = [{"name": "web", "servers": [{"address": web.address, "name": "web-1"}]},
                    {"name": "attack", "servers": [{"address": target.address, "name": "target"}]}]
        routes = [{"match": {"path_prefix": "/attack/"}, "backend": "attack"}, {"backend": "web"}]
        self.lb = self.start_h3_lb(backends=backends, routes=routes, limits=limits, workers=workers)
        return self.lb

    def attack_args(self, mode: str, *args, **opts) -> list[str]:
        cmd = [H3_ATTACK]
        for k, v in opts.items():
            cmd.append(f"--{k.replace('_', '-')}={v}")
        return cmd + [q.HOST, str(self.lb.https_port), mode, *map(str, args)]

    def attack(self, mode: str, *args, timeout: float = 30, **opts) -> dict:
        """Runs weir_h3_attack to its end; returns its JSON summary (plus "stderr")."""
        cmd = self.attack_args(mode, *args, timeout=timeout, **opts)
        p = run(cmd, timeout=timeout + 30)
        return self.summary(cmd, p.returncode, p.stdout.decode(), p.stderr.decode())

    def summary(self, cmd, rc, out: str, err: str) -> dict:
        self.assertEqual(rc, 0, f"$ {' '.join(cmd)}\nexit {rc}\n{out}\n{err[-3000:]}")
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        self.assertTrue(lines, f"no JSON summary from weir_h3_attack:\n{out}\n{err[-3000:]}")
        res = json.loads(lines[-1])
        res["stderr"] = err
        res["cmd"] = " ".join(cmd)
        return res

    def abusive(self) -> float:
        return self.lb.metrics().get("weir_h3_abusive_connections_total")

    def settled(self):
        return (buffers(self.lb.admin_port)["in_use"] == 0 and
                self.m(self.lb, "weir_quic_connections_open") == 0)

    def still_serves(self, what: str):
        weir_alive(self, self.lb)
        r = self.h3(self.lb, "/after")
        self.assertH3Ok(r, 1)
        print(f"after {what}: a new HTTP/3 client got {r.statuses}")

    @staticmethod
    def brief(res: dict) -> str:
        keep = ("mode", "args", "handshake", "elapsed", "timed_out", "error", "server_params", "opened",
                "requests_sent", "resets_sent", "refused_locally", "first_burst", "max_streams_credit",
                "peak_in_flight", "header_bytes", "header_fields", "statuses", "unanswered", "complete",
                "stream_close_codes", "resets_received", "stop_sending_received", "body_bytes", "consumed",
                "stalled_at", "goaway_id", "closed_by_server", "close", "datagrams")
        return json.dumps({k: res[k] for k in keep if k in res})

    # ---- 1. sanity

    def test_get_sanity(self):
        self.start()
        res = self.attack("get", 20, "/")
        print(f"\nget 20 /: {self.brief(res)}")
        self.assertTrue(res["handshake"], res)
        self.assertEqual(res["alpn"], "h3", res)
        self.assertIsNone(res["error"], res)
        self.assertFalse(res["timed_out"], res)
        self.assertEqual(res["statuses"], {"200": 20}, res)
        self.assertEqual(res["complete"], 20, res)
        self.assertFalse(res["closed_by_server"], res)
        self.assertEqual(self.lb.requests("web"), 20)
        wait_until(self.settled, 10, what="weir to release the connection and its buffers")

    # ---- 2. rapid reset

    def test_rapid_reset(self):
        self.start()
        # Settled before the well-behaved client starts: its own connections (each in its closing
        # period for a while after it ends) keep weir from ever looking idle while it runs.
        wait_until(self.settled, 10, what="weir idle before the attack")
        normal = H3Normal(self.lb.https_port).start()
        self.addCleanup(normal.stop)
        normal.wait_count(1)
        abusive_before = self.abusive()
        peak = PeakRss(self.lb.pid)
        watch = BufferWatch(self.lb.admin_port)
        self.addCleanup(watch.close)
        res = self.attack("rapid-reset", 5000, "/attack/slow?delay=1s", timeout=60)
        blocks = watch.stop()
        try:
            wait_until(lambda: self.abusive() > abusive_before, 3, what="weir_h3_abusive_connections_total")
        except AssertionError:
            pass
        abuse = self.abusive() - abusive_before
        normal.wait_count(len(normal.results) + len(normal.errors) + 2, timeout=60)
        wait_until(lambda: find_server(self.lb.backends(), "attack", "target")["active_requests"] == 0, 15,
                   what="the attack's requests to end at the backend")
        reached = self.lb.requests("attack")
        print(f"\nrapid-reset 5000: {self.brief(res)}\n"
              f"reached the backend: {reached}; weir_h3_abusive_connections_total +{abuse:.0f}; "
              f"at most {blocks} buffer blocks held")
        normal.check(self, "during/after the rapid reset")
        peak.check(self, 64 * MB, what="rapid reset over HTTP/3")
        self.still_serves("the rapid reset")
        self.assertTrue(res["handshake"], res)
        # weir must cut it: H3_EXCESSIVE_LOAD once client resets of unanswered streams pass the
        # budget (a burst of 200, then 100 per second, as HTTP/2 does).
        self.assertTrue(res["closed_by_server"],
                        f"weir let {res['resets_sent']} reset streams through without closing the connection: "
                        f"{self.brief(res)}")
        self.assertEqual((res["close"]["type"], res["close"]["code"]), ("application", H3_EXCESSIVE_LOAD),
                         f"closed with {res['close']}, expected H3_EXCESSIVE_LOAD: {self.brief(res)}")
        self.assertLess(res["resets_sent"], 5000, self.brief(res))
        self.assertEqual(abuse, 1, "weir_h3_abusive_connections_total")
        self.assertLess(reached, 1000, "reset streams that reached the backend")
        normal.stop()
        wait_until(self.settled, 15, what="weir to release the attacker's connection and its buffers")

    def test_resets_under_the_rate_are_not_cut(self):
        # 400 requests cancelled at 50 a second: under the budget (100 a second after a burst of
        # 200), so a client that cancels a lot, but not abusively, keeps its connection.
        self.start()
        abusive_before = self.abusive()
        res = self.attack("rapid-reset", 400, "/attack/slow?delay=1s", rate=50, timeout=40)
        print(f"\nrapid-reset 400 at 50/s: {self.brief(res)}; {self.lb.requests('attack')} reached the backend")
        self.assertTrue(res["handshake"], res)
        self.assertIsNone(res["error"], res)
        self.assertEqual(res["resets_sent"], 400, self.brief(res))
        self.assertFalse(res["closed_by_server"], f"weir cut a client resetting 50 streams a second: {self.brief(res)}")
        self.assertEqual(self.abusive() - abusive_before, 0, "weir_h3_abusive_connections_total")
        self.still_serves("resets under the rate")

    # ---- 3. stream flood

    def test_stream_flood_held_to_limit(self):
        self.start(limits={"h3_max_concurrent_streams": 10})
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], find_server(self.lb.backends(), "attack", "target")["active_requests"])
                except Exception:  # noqa: BLE001 - sampling only
                    pass
                stop.wait(0.02)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            res = self.attack("stream-flood", 30, "/attack/slow?delay=500ms", timeout=40)
        finally:
            stop.set()
            t.join(10)
        print(f"\nstream-flood 30 with h3_max_concurrent_streams 10: {self.brief(res)}\n"
              f"at most {peak[0]} requests at the backend at once; {self.lb.requests('attack')} reached it")
        self.assertTrue(res["handshake"], res)
        self.assertIsNone(res["error"], res)
        self.assertEqual(res["server_params"]["initial_max_streams_bidi"], 10, res)
        self.assertEqual(res["first_burst"], 10, "streams the client could open at once")
        self.assertGreater(res["refused_locally"], 0, "the client never hit the limit")
        self.assertLessEqual(res["peak_in_flight"], 10, res)
        self.assertEqual(res["statuses"], {"200": 30}, self.brief(res))
        self.assertLessEqual(peak[0], 10, "more requests at the backend than h3_max_concurrent_streams")
        self.assertEqual(self.lb.requests("attack"), 30)
        self.still_serves("the stream flood")

    # ---- 4. big headers

    def big_headers(self, size: int, field_size: int = 100):
        res = self.attack("big-headers", size, "/attack/big", field_size=field_size, timeout=30)
        print(f"\nbig-headers {size} (fields of {field_size} bytes) with max_header_bytes 8KiB: {self.brief(res)}")
        self.assertTrue(res["handshake"], res)
        self.assertFalse(res["timed_out"], f"no answer to the big header section: {self.brief(res)}")
        refused = (res["statuses"] == {"431": 1} or res["resets_received"] or
                   (res["closed_by_server"] and res["close"] is not None))
        self.assertTrue(refused, f"a {res.get('header_bytes')}-byte header section was not refused: {self.brief(res)}")
        if res["statuses"]:
            self.assertEqual(res["statuses"], {"431": 1}, self.brief(res))
        return res

    def test_big_headers(self):
        self.start(limits={"max_header_bytes": "8KiB"})
        small = self.attack("big-headers", 6000, "/attack/small")
        print(f"\nbig-headers 6000 (under the limit): {self.brief(small)}")
        self.assertEqual(small["statuses"], {"200": 1}, self.brief(small))
        self.assertEqual(self.lb.requests("attack"), 1)
        self.big_headers(64 * 1024)
        self.big_headers(20 * 1024, field_size=16 * 1024)  # one field bigger than the limit
        peak = PeakRss(self.lb.pid)
        self.big_headers(4 * MB, field_size=1000)
        peak.check(self, 16 * MB, what="a 4 MiB header section over HTTP/3")
        self.assertEqual(self.lb.requests("attack"), 1, "an oversized header section reached the backend")
        self.still_serves("the big header sections")

    def qpack_bomb(self, size: int):
        """One request whose header section decodes to `size` bytes: fields `accept-language:
        vvvv...` (2000 bytes), the same each time, so QPACK sends one dynamic table entry and
        then ~2 bytes per field referencing it (400 MB from ~220 KB on the wire)."""
        cpu0 = cpu_seconds(self.lb.pid)
        cmd = self.attack_args("big-headers", size, "/attack/bomb", field_size=2000, timeout=60)
        cmd.insert(1, "--same-field")
        p = run(cmd, timeout=90)
        res = self.summary(cmd, p.returncode, p.stdout.decode(), p.stderr.decode())
        cpu = cpu_seconds(self.lb.pid) - cpu0
        print(f"\nQPACK bomb, {size} bytes decoded from {res['datagrams']['bytes_out']} bytes sent, "
              f"max_header_bytes 8KiB: {self.brief(res)}\nthe request all sent at {res['first_request_sent_at']}s, "
              f"its :status at {res['first_status_at']}s; weir used {cpu:.2f}s of CPU")
        return res, cpu

    def test_qpack_bomb(self):
        self.start(limits={"max_header_bytes": "8KiB"})
        normal = H3Normal(self.lb.https_port).start()
        self.addCleanup(normal.stop)
        normal.wait_count(1)
        peak = PeakRss(self.lb.pid)
        res, cpu = self.qpack_bomb(400 * MB)
        self.assertTrue(res["handshake"], res)
        self.assertFalse(res["timed_out"], self.brief(res))
        self.assertLess(res["datagrams"]["bytes_out"], 2 * MB, "the bomb was not compressed: QPACK did not index")
        refused = res["statuses"] == {"431": 1} or res["resets_received"] or res["closed_by_server"]
        self.assertTrue(refused, f"a QPACK bomb was not refused: {self.brief(res)}")
        if res["statuses"]:
            self.assertEqual(res["statuses"], {"431": 1}, self.brief(res))
        self.assertEqual(self.lb.requests("attack"), 0, "the QPACK bomb reached the backend")
        normal.wait_count(len(normal.results) + len(normal.errors) + 2)
        normal.check(self, "during/after the QPACK bomb")
        peak.check(self, 16 * MB, what="a QPACK bomb (400 MB of header fields)")
        self.still_serves("the QPACK bomb")

    def test_oversized_header_section_is_cut_early(self):
        # weir announces SETTINGS_MAX_FIELD_SECTION_SIZE = max_header_bytes; once a request's
        # fields pass it, weir stops reading the stream (STOP_SENDING H3_EXCESSIVE_LOAD) and
        # answers 431 at once, so the client cannot make it decode the rest (a QPACK reference
        # bomb: 400 MB of fields from a few hundred KB sent, over a second of a worker's CPU
        # when it was read to the end).
        self.start(limits={"max_header_bytes": "8KiB"})
        res, cpu = self.qpack_bomb(400 * MB)
        cut = (not res["requests_sent"] or res["stop_sending_received"] or res["resets_received"]
               or res["closed_by_server"])
        self.assertTrue(cut, f"weir read the whole {res['header_bytes']}-byte header section "
                             f"(max_header_bytes 8 KiB) before answering; {cpu:.2f}s of CPU: {self.brief(res)}")

    # ---- 5. slow reader

    def slow_reader(self, read_rate: int = 0, size: int = 50_000_000, hold: float = 5.0):
        window = 64 * 1024
        self.start(limits={"h3_stream_window": "64KiB"})
        self.assertH3Ok(self.h3(self.lb, "/attack/warm?size=1000000", download=os.path.join(self.tmp, "warm")), 1)
        wait_until(self.settled, 10, what="weir idle before the slow reader")
        # Buffers sampled every 100 ms, not with BufferWatch: under ASan every admin request's
        # freed memory stays in quarantine a while, and BufferWatch's 100 samples a second show
        # as some 24 MiB of RSS growth of their own in 5 s.
        block = buffers(self.lb.admin_port)["block_bytes"]
        peak = PeakRss(self.lb.pid)
        cmd = self.attack_args("slow-read", f"/attack/big?size={size}", window=window, read_rate=read_rate,
                               hold=hold, timeout=hold + 20)
        p = self.spawn(cmd, "h3-attack", expect_exit=0)
        # While it holds the stream: what weir keeps for it.
        wait_until(lambda: find_server(self.lb.backends(), "attack", "target")["active_requests"] == 1, 10,
                   what="the slow reader's request at the backend")
        held = []
        while p.alive():
            held.append(buffers(self.lb.admin_port)["in_use"])
            time.sleep(0.1)
        self.assertEqual(p.wait(30), 0, p.stderr()[-3000:])
        blocks = max(held, default=0)
        res = self.summary(cmd, 0, p.stdout(), p.stderr())
        growth = peak.growth()
        print(f"\nslow reader (window {window} B, read rate {read_rate} B/s, {size}-byte response, "
              f"h3_stream_window 64KiB): {self.brief(res)}\n"
              f"buffer blocks of {block} B: at most {blocks}, while held {held[:3]}...{held[-3:]}; "
              f"weir RSS high-water growth {growth / MB:.1f} MiB")
        self.assertTrue(res["handshake"], res)
        self.assertEqual(res["statuses"], {"200": 1}, self.brief(res))
        self.assertFalse(res["closed_by_server"], self.brief(res))
        # The client's window held the body back: what came is the window, plus what it read.
        self.assertLessEqual(res["body_bytes"], window + res["consumed"] + read_rate * 1 + 4096, self.brief(res))
        # weir holds back too: its stream's send queue (max(h3_stream_window, 64 KiB)) and the
        # backend connection's block, not the 50 MB.
        bound = -(-window // block) + 4
        self.assertLessEqual(blocks, bound, f"buffer blocks held for one slow HTTP/3 reader (bound {bound})")
        self.assertLess(growth, 16 * MB, "weir's RSS grew by more than 16 MiB for one slow reader")
        # The client closed: all of it is released, and the backend's request ended.
        wait_until(self.settled, 15, what="buffers back to 0 and the connection gone after the slow reader closed")
        wait_until(lambda: find_server(self.lb.backends(), "attack", "target")["active_requests"] == 0, 15,
                   what="the backend request to end after the slow reader closed")
        self.still_serves("the slow reader")
        return res

    def test_slow_reader_never_reads(self):
        self.slow_reader()

    def test_slow_reader_trickle(self):
        res = self.slow_reader(read_rate=64 * 1024)
        self.assertGreater(res["consumed"], 0, self.brief(res))


if __name__ == "__main__":
    unittest.main()
