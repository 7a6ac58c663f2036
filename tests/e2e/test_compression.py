"""Response compression (edge.md "Compression"): each coding decoded by a real decoder (curl
--compressed, python3-brotli, `zstd -d`, zlib) gives back the origin's bytes, over HTTP/1.1 and
HTTP/2; negotiation by q-values and the server's order; the rules that leave a response alone;
the head's edits (Vary, weak ETag, no Content-Length); streaming (a server-sent event reaches the
client before the server's next one); and memory kept bounded by a response that compresses
1,000:1."""

import json
import os
import socket
import subprocess
import threading
import time
import unittest
import zlib

import brotli

from tlstest import curl
from weirtest import (Env, HttpConn, ScriptedServer, WeirTestCase, free_port, http_get,
                      http_request, lb_config, read_request_head, rss_anon, wait_until)


def json_body(size: int) -> bytes:
    """A JSON document of about `size` bytes that compresses like real API output."""
    items, n = [], 0
    while n < size:
        item = {"id": len(items), "name": f"item-{len(items)}", "tags": ["alpha", "beta"],
                "price": len(items) * 3.25, "active": len(items) % 3 == 0}
        items.append(item)
        n += len(json.dumps(item)) + 2
    return json.dumps(items).encode()


BIG = json_body(100 * 1024)
SMALL = b'{"ok": true}'
TEXT = (b"The quick brown fox jumps over the lazy dog. " * 200)
BOMB_CHUNK = b"\0" * (1 << 20)
BOMB_CHUNKS = 200  # 200 MiB of zeros: about 1,000:1 under every coding
SSE_GAP = 1.0  # seconds between the two events of /events


def respond(c, status_line: bytes, fields: list[tuple[str, str]], body: bytes, length=True):
    head = status_line + b"\r\n"
    for k, v in fields:
        head += f"{k}: {v}\r\n".encode()
    if length:
        head += b"Content-Length: %d\r\n" % len(body)
    c.sendall(head + b"\r\n" + body)


def origin_handler(c):
    while True:
        head = read_request_head(c)
        if not head:
            return
        target = head.split(b" ", 2)[1].decode()
        method = head.split(b" ", 1)[0]
        ok = b"HTTP/1.1 200 OK"
        if target == "/json" and method == b"HEAD":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(BIG))
        elif target == "/json":
            respond(c, ok, [("Content-Type", "application/json")], BIG)
        elif target == "/small":
            respond(c, ok, [("Content-Type", "application/json")], SMALL)
        elif target == "/png":
            respond(c, ok, [("Content-Type", "image/png")], TEXT)
        elif target == "/no-transform":
            respond(c, ok, [("Content-Type", "text/plain"),
                            ("Cache-Control", "public, no-transform")], TEXT)
        elif target == "/already":
            gz = zlib.compress(TEXT)
            respond(c, ok, [("Content-Type", "text/plain"), ("Content-Encoding", "deflate")], gz)
        elif target == "/validators":
            respond(c, ok, [("Content-Type", "text/html; charset=utf-8"), ("ETag", '"v1"'),
                            ("Vary", "Cookie"), ("Accept-Ranges", "bytes")], TEXT)
        elif target == "/wildcard":
            respond(c, ok, [("Content-Type", "text/x-custom")], TEXT)
        elif target == "/chunked":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(TEXT), 700):
                part = TEXT[i:i + 700]
                c.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            c.sendall(b"0\r\n\r\n")
        elif target == "/events":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            first = b"data: first event\n\n" * 40
            c.sendall(b"%x\r\n%s\r\n" % (len(first), first))
            time.sleep(SSE_GAP)
            second = b"data: second event\n\n"
            c.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(second), second))
        elif target == "/bomb":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                      b"Content-Length: %d\r\n\r\n" % (len(BOMB_CHUNK) * BOMB_CHUNKS))
            for _ in range(BOMB_CHUNKS):
                c.sendall(BOMB_CHUNK)
        else:
            respond(c, b"HTTP/1.1 404 Not Found", [("Content-Type", "text/plain")], b"no\n")


def zstd_decode(data: bytes) -> bytes:
    p = subprocess.run(["zstd", "-d", "-c", "-q"], input=data, capture_output=True, timeout=30)
    if p.returncode != 0:
        raise AssertionError(f"zstd -d failed: {p.stderr!r}")
    return p.stdout


def decode(coding: str | None, data: bytes) -> bytes:
    if coding is None:
        return data
    if coding == "gzip":
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    if coding == "br":
        return brotli.decompress(data)
    if coding == "zstd":
        return zstd_decode(data)
    raise AssertionError(f"unexpected coding {coding}")


class CompressionTest(WeirTestCase):
    @classmethod
    def setUpClass(cls):
        env = Env(cls.addClassCleanup)
        cls.origin = ScriptedServer(origin_handler)
        cls.addClassCleanup(cls.origin.stop)
        routes = [
            {"match": {"path_prefix": "/gzip-only/"}, "backend": "origin",
             "rewrite": {"strip_prefix": "/gzip-only"},
             "compression": {"algorithms": ["gzip"], "levels": {"gzip": 9}}},
            {"match": {"path_prefix": "/off/"}, "backend": "origin",
             "rewrite": {"strip_prefix": "/off"}, "compression": False},
            {"match": {"path_prefix": "/wild/"}, "backend": "origin",
             "rewrite": {"strip_prefix": "/wild"},
             "compression": {"types": ["text/*"], "min_size": "0"}},
            {"match": {"path_prefix": "/"}, "backend": "origin"},
        ]
        backends = [{"name": "origin", "servers": [{"address": cls.origin.address}]}]
        cls.port = free_port()
        cls.lb = env.start_weir(lb_config(
            cls.port, [], routes=routes, backends=backends,
            listener_extra={"h2c": True, "compression": {"algorithms": ["zstd", "br", "gzip"]}}))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fetch(self, path: str, accept: str | None, h2: bool = False, method: str = "GET"):
        args = ["--http2-prior-knowledge"] if h2 else ["--http1.1"]
        if accept is not None:
            args += ["-H", f"Accept-Encoding: {accept}"]
        if method == "HEAD":
            args += ["-I"]
        r = curl(self.url(path), *args)
        self.assertEqual(r.rc, 0, r.stderr)
        return r

    def header(self, r, name: str):
        for k, v in r.headers:
            if k.lower() == name.lower():
                return v
        return None

    def test_each_coding_decodes_to_the_original_over_h1_and_h2(self):
        for h2 in (False, True):
            for coding in ("gzip", "br", "zstd"):
                for path in ("/json", "/chunked"):
                    with self.subTest(h2=h2, coding=coding, path=path):
                        r = self.fetch(path, coding, h2=h2)
                        self.assertEqual(r.code, 200)
                        self.assertEqual(self.header(r, "content-encoding"), coding)
                        self.assertIsNone(self.header(r, "content-length"))
                        self.assertIn("Accept-Encoding", self.header(r, "vary") or "")
                        original = BIG if path == "/json" else TEXT
                        self.assertEqual(decode(coding, r.body), original)
                        self.assertLess(len(r.body), len(original) // 3)

    def test_curl_compressed_decodes_every_coding(self):
        # curl offers "deflate, gzip, br, zstd": weir's order picks zstd.
        for h2 in (False, True):
            r = curl(self.url("/json"), "--compressed",
                     "--http2-prior-knowledge" if h2 else "--http1.1")
            self.assertEqual(r.rc, 0, r.stderr)
            self.assertEqual(self.header(r, "content-encoding"), "zstd")
            self.assertEqual(r.body, BIG)

    def test_negotiation(self):
        cases = [
            ("gzip;q=0.5, br;q=0.9", "br"),        # the highest q wins
            ("gzip, br", "br"),                     # a tie: the server's order (zstd, br, gzip)
            ("*", "zstd"),                          # any: the server's first
            ("*;q=0.1, gzip", "gzip"),
            ("zstd;q=0, *", "br"),                  # q=0 refuses
            ("identity", None),
            ("gzip;q=0, br;q=0, zstd;q=0", None),
            ("compress, deflate", None),            # nothing weir offers
            ("GZIP", "gzip"),
            ("x-gzip", "gzip"),
            ("gzip;q=1.5", None),                   # an invalid q-value: the element is skipped
            ("", None),
        ]
        for accept, want in cases:
            with self.subTest(accept=accept):
                r = self.fetch("/json", accept)
                self.assertEqual(self.header(r, "content-encoding"), want)
                self.assertEqual(decode(want, r.body), BIG)
                # Compressed or not, the answer depends on Accept-Encoding.
                self.assertIn("Accept-Encoding", self.header(r, "vary") or "")
        r = self.fetch("/json", None)
        self.assertIsNone(self.header(r, "content-encoding"))
        self.assertEqual(self.header(r, "content-length"), str(len(BIG)))

    def test_responses_left_alone(self):
        for path, why in [("/small", "below min_size"), ("/png", "type not listed"),
                          ("/no-transform", "Cache-Control: no-transform"),
                          ("/off/json", "the route turns compression off")]:
            with self.subTest(why=why):
                r = self.fetch(path, "gzip, br, zstd")
                self.assertEqual(r.code, 200)
                self.assertIsNone(self.header(r, "content-encoding"))
                self.assertIsNotNone(self.header(r, "content-length"))
        r = self.fetch("/already", "gzip, br, zstd")
        self.assertEqual(self.header(r, "content-encoding"), "deflate")
        self.assertEqual(zlib.decompress(r.body), TEXT)
        r = self.fetch("/json", "gzip", method="HEAD")
        self.assertIsNone(self.header(r, "content-encoding"))
        self.assertEqual(self.header(r, "content-length"), str(len(BIG)))

    def test_route_settings_replace_the_listeners(self):
        r = self.fetch("/gzip-only/json", "zstd, br, gzip")
        self.assertEqual(self.header(r, "content-encoding"), "gzip")
        self.assertEqual(decode("gzip", r.body), BIG)
        r = self.fetch("/wild/wildcard", "br")  # text/* matches text/x-custom
        self.assertEqual(self.header(r, "content-encoding"), "br")
        self.assertEqual(decode("br", r.body), TEXT)
        r = self.fetch("/wildcard", "br")  # not in the default list
        self.assertIsNone(self.header(r, "content-encoding"))
        r = self.fetch("/wild/small", "br")  # min_size 0 on that route, but not a text/* type
        self.assertIsNone(self.header(r, "content-encoding"))

    def test_head_edits(self):
        r = self.fetch("/validators", "gzip")
        self.assertEqual(self.header(r, "content-encoding"), "gzip")
        self.assertEqual(self.header(r, "etag"), 'W/"v1"')
        self.assertEqual(self.header(r, "vary"), "Cookie, Accept-Encoding")
        self.assertIsNone(self.header(r, "accept-ranges"))
        self.assertEqual(decode("gzip", r.body), TEXT)
        r = self.fetch("/validators", "identity")
        self.assertEqual(self.header(r, "etag"), '"v1"')
        self.assertEqual(self.header(r, "vary"), "Cookie, Accept-Encoding")

    def test_http10_client_gets_a_close_delimited_body(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(b"GET /json HTTP/1.0\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Encoding: gzip", head)
        self.assertNotIn(b"Transfer-Encoding", head)
        self.assertEqual(decode("gzip", body), BIG)

    def test_streaming_an_event_is_not_held_back(self):
        """The first event reaches the client, decodable, before the server sends the next."""
        for coding in ("gzip", "br", "zstd"):
            with self.subTest(coding=coding), HttpConn(self.port) as c:
                c.send(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept-Encoding: %s\r\n\r\n"
                       % coding.encode())
                start = time.monotonic()
                r = c.read_head()
                self.assertEqual(r.header("content-encoding"), coding)
                # Read the chunked body until the first event decodes.
                raw = bytes(c.buf)  # what came with the head
                c.sock.settimeout(0.05)
                while True:
                    got_first = b"first event" in partial_decode(coding, raw)
                    if got_first or time.monotonic() - start > SSE_GAP * 0.8:
                        break
                    try:
                        chunk = c.sock.recv(65536)
                    except socket.timeout:
                        continue
                    if not chunk:
                        break
                    raw += chunk
                self.assertTrue(got_first, f"{coding}: the first event was held back")


def dechunk_prefix(data: bytes) -> bytes:
    """The payload of the complete chunks at the start of `data`."""
    out, i = b"", 0
    while True:
        j = data.find(b"\r\n", i)
        if j < 0:
            return out
        size = int(data[i:j].split(b";")[0], 16)
        if size == 0 or j + 2 + size + 2 > len(data):
            return out
        out += data[j + 2:j + 2 + size]
        i = j + 2 + size + 2


def partial_decode(coding: str, data: bytes) -> bytes:
    payload = dechunk_prefix(data)
    try:
        if coding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
        if coding == "br":
            d = brotli.Decompressor()
            return d.process(payload)
        p = subprocess.run(["zstd", "-d", "-c", "-q"], input=payload, capture_output=True,
                           timeout=10)
        return p.stdout  # a truncated frame still yields what was flushed
    except Exception:
        return b""


class CompressionOfStoredResponsesTest(WeirTestCase):
    """A cache route with compression: the store keeps the server's bytes, and every client,
    the first (miss) and the next (hits), gets its own coding of them."""

    @classmethod
    def setUpClass(cls):
        env = Env(cls.addClassCleanup)
        cls.requests = 0

        def handler(c):
            while True:
                head = read_request_head(c)
                if not head:
                    return
                cls.requests += 1
                respond(c, b"HTTP/1.1 200 OK", [("Content-Type", "application/json"),
                                                ("Cache-Control", "max-age=60")], BIG)

        cls.origin = ScriptedServer(handler)
        cls.addClassCleanup(cls.origin.stop)
        cls.port = free_port()
        cfg = lb_config(cls.port, [], routes=[{"match": {"path_prefix": "/"}, "cache": "edge",
                                               "backend": "origin"}],
                        backends=[{"name": "origin", "servers": [{"address": cls.origin.address}]}],
                        listener_extra={"h2c": True, "compression": {}})
        cfg["caches"] = [{"name": "edge", "memory": "8MiB"}]
        cls.lb = env.start_weir(cfg)

    def test_each_client_its_coding(self):
        seen = []
        for coding, h2 in [("gzip", False), ("br", False), ("zstd", True), (None, False),
                           ("gzip", True)]:
            args = ["--http2-prior-knowledge" if h2 else "--http1.1"]
            if coding:
                args += ["-H", f"Accept-Encoding: {coding}"]
            r = curl(f"http://127.0.0.1:{self.port}/doc", *args)
            self.assertEqual(r.rc, 0, r.stderr)
            headers = {k.lower(): v for k, v in r.headers}
            self.assertEqual(headers.get("content-encoding"), coding)
            self.assertEqual(decode(coding, r.body), BIG)
            seen.append(headers.get("cache-status", ""))
        self.assertIn("stored", seen[0])
        self.assertTrue(all(s.startswith("weir; hit") for s in seen[1:]), seen)
        self.assertEqual(self.requests, 1)


class CompressionBoundsTest(WeirTestCase):
    """A response that compresses 1,000:1 through weir: its memory does not follow the size."""

    @classmethod
    def setUpClass(cls):
        env = Env(cls.addClassCleanup)
        cls.origin = ScriptedServer(origin_handler)
        cls.addClassCleanup(cls.origin.stop)
        backends = [{"name": "origin", "servers": [{"address": cls.origin.address}]}]
        cls.port = free_port()
        cls.lb = env.start_weir(lb_config(
            cls.port, [], routes=[{"match": {"path_prefix": "/"}, "backend": "origin"}],
            backends=backends,
            listener_extra={"h2c": True, "compression": {"types": ["text/plain"]}}))

    def test_bomb_keeps_memory_bounded(self):
        pid = self.lb.pid
        http_get(self.port, "/small")
        base = rss_anon(pid)
        results = {}

        def one(coding, h2):
            args = ["--http2-prior-knowledge" if h2 else "--http1.1", "-H",
                    f"Accept-Encoding: {coding}"]
            r = curl(f"http://127.0.0.1:{self.port}/bomb", *args, timeout=120)
            results[(coding, h2)] = r

        threads = [threading.Thread(target=one, args=(c, h2))
                   for c in ("gzip", "br", "zstd") for h2 in (False, True)]
        peak = 0
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_anon(pid))
            time.sleep(0.05)
        for t in threads:
            t.join()
        total = len(BOMB_CHUNK) * BOMB_CHUNKS
        for (coding, h2), r in results.items():
            with self.subTest(coding=coding, h2=h2):
                self.assertEqual(r.rc, 0, r.stderr)
                self.assertEqual(self.header(r, "content-encoding"), coding)
                # deflate tops out near 1,000:1; a flush per read of the server costs a little.
                self.assertLess(len(r.body), total // 200)
                out = decode(coding, r.body)
                self.assertEqual(len(out), total)
                self.assertEqual(out.count(0), total)
        # Six responses of 200 MiB at once: a few MiB of compressor state each, not the body.
        self.assertLess(peak - base, 48 << 20, f"RSS grew {(peak - base) >> 20} MiB")

    def header(self, r, name: str):
        for k, v in r.headers:
            if k.lower() == name.lower():
                return v
        return None


if __name__ == "__main__":
    unittest.main()
