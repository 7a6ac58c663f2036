"""Static files (edge.md "Static files") from a root the test builds: a table of traversal
attempts that must all be 404 (and never leak a byte from outside the root), hidden files,
symlinks, directories and their index, MIME types, validators and 304s, ranges (206, 416, several
ranges → 200, If-Range), HEAD and 405, precompressed variants, the same over HTTP/2 and TLS, a
file that changes under a download, and a 1 GiB file sent with bounded memory."""

import gzip
import os
import shutil
import socket
import tempfile
import threading
import time
import unittest

import brotli

from tlstest import Certs, curl
from weirtest import (Env, HttpConn, WeirTestCase, free_port, http_get, http_request, lb_config,
                      rss_anon)

SECRET = b"TOP-SECRET-OUTSIDE-THE-ROOT"
INDEX = b"<!doctype html><title>home</title>"
CSS = b"body { color: #123456; }\n" * 50
GIB = 1 << 30


def build_tree(base: str) -> tuple[str, str]:
    """base/www (the root) and base/outside (must never be served)."""
    root = os.path.join(base, "www")
    outside = os.path.join(base, "outside")
    for d in (root, outside, os.path.join(root, "assets"), os.path.join(root, "docs"),
              os.path.join(root, "empty"), os.path.join(root, ".git"), os.path.join(root, "in")):
        os.makedirs(d, exist_ok=True)

    def write(path, data):
        with open(path, "wb") as f:
            f.write(data)

    write(os.path.join(outside, "secret.txt"), SECRET)
    write(os.path.join(root, "index.html"), INDEX)
    write(os.path.join(root, "docs", "index.html"), b"docs index")
    write(os.path.join(root, "assets", "app.css"), CSS)
    write(os.path.join(root, "assets", "app.css.gz"), gzip.compress(CSS))
    write(os.path.join(root, "assets", "app.css.br"), brotli.compress(CSS))
    write(os.path.join(root, "assets", "logo.svg"), b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    write(os.path.join(root, "assets", "data.json"), b'{"a": 1}')
    write(os.path.join(root, "assets", "blob.xyz"), b"\x00\x01\x02")
    write(os.path.join(root, "assets", "upper.PNG"), b"\x89PNG")
    write(os.path.join(root, "digits.txt"), b"0123456789")
    write(os.path.join(root, ".env"), SECRET)
    write(os.path.join(root, ".git", "config"), SECRET)
    write(os.path.join(root, "in", "real.txt"), b"inside")
    write(os.path.join(root, "a b.txt"), b"space")
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, "leak.txt"))
    os.symlink(outside, os.path.join(root, "leakdir"))
    os.symlink("../outside/secret.txt", os.path.join(root, "relleak.txt"))
    os.symlink("in/real.txt", os.path.join(root, "inside-link.txt"))
    os.symlink("/proc/self/environ", os.path.join(root, "environ"))
    os.mkfifo(os.path.join(root, "fifo"))
    with open(os.path.join(root, "huge.bin"), "wb") as f:
        f.truncate(GIB)  # sparse: reads as zeros, takes no disk
    return root, outside


class StaticTest(WeirTestCase):
    @classmethod
    def setUpClass(cls):
        env = Env(cls.addClassCleanup)
        cls.base = tempfile.mkdtemp(prefix="weir-static-")
        cls.addClassCleanup(shutil.rmtree, cls.base, True)
        cls.root, _ = build_tree(cls.base)
        cls.certs = Certs(cls.base)
        routes = [
            {"match": {"path_prefix": "/assets/"},
             "static": {"root": os.path.join(cls.root, "assets"), "strip_prefix": "/assets",
                        "precompressed": True}},
            {"match": {"path_prefix": "/"}, "static": {"root": cls.root}},
        ]
        cls.port = free_port()
        cls.tls_port = free_port()
        cfg = lb_config(cls.port, [], routes=routes, backends=[],
                        listener_extra={"h2c": True})
        cfg.pop("backends", None)
        tls_listener = {"name": "tls", "listen": f"127.0.0.1:{cls.tls_port}",
                        "tls": {"certificates": [{"cert": cls.certs.a.path,
                                                  "key": cls.certs.a.key}]},
                        "routes": routes}
        cfg["listeners"].append(tls_listener)
        cls.lb = env.start_weir(cfg)

    def get(self, target, headers=None, method="GET"):
        return http_request(self.port, method, target, headers or [], None, "example.test")

    # ---- never outside the root
    def test_traversal_attempts_are_404(self):
        attempts = [
            "/../outside/secret.txt", "/..%2foutside/secret.txt", "/%2e%2e/outside/secret.txt",
            "/%2E%2E/outside/secret.txt", "/%2e%2e%2foutside%2fsecret.txt",
            "/.%2e/outside/secret.txt", "/%2e./outside/secret.txt", "/docs/../../outside/secret.txt",
            "/docs/%2e%2e/%2e%2e/outside/secret.txt", "/..\\outside\\secret.txt",
            "/%5c..%5coutside%5csecret.txt", "/in%2freal.txt", "/in%2Freal.txt",
            "/./digits.txt", "/docs/./index.html", "/%2e/digits.txt", "/digits.txt%00.html",
            "/digits.txt%00", "/%00", "/.env", "/.git/config", "/%2egit/config", "/.git/",
            "/leak.txt", "/leakdir/secret.txt", "/relleak.txt", "/environ", "/fifo",
            "/empty/", "/empty", "/nope.txt", "/" + "a/" * 3000, "/digits.txt/",
            "/digits.txt/x",
        ]
        for target in attempts:
            with self.subTest(target=target):
                r = self.get(target)
                self.assertEqual(r.status, 404, f"{target} → {r.status} {r.body[:60]!r}")
                self.assertNotIn(SECRET, r.body)
        # An invalid escape is refused by the request parser (400) before any route.
        for target in ("/%zz", "/%2"):
            with self.subTest(target=target):
                self.assertEqual(self.get(target).status, 400)
        # A NUL byte on the wire is refused by the request parser itself.
        with HttpConn(self.port) as c:
            c.send(b"GET /digits.txt\x00.html HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 400)
        # curl with --path-as-is sends the dots unnormalized.
        r = curl(f"http://127.0.0.1:{self.port}/../../outside/secret.txt", "--path-as-is")
        self.assertEqual(r.code, 404)
        self.assertNotIn(SECRET, r.body)

    def test_files_directories_and_links_inside(self):
        r = self.get("/")
        self.assertEqual((r.status, r.body), (200, INDEX))
        self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")
        r = self.get("/docs/")
        self.assertEqual((r.status, r.body), (200, b"docs index"))
        r = self.get("/docs")  # a directory without the slash: its index too, no redirect
        self.assertEqual((r.status, r.body), (200, b"docs index"))
        r = self.get("/inside-link.txt")
        self.assertEqual((r.status, r.body), (200, b"inside"))
        r = self.get("/a%20b.txt")
        self.assertEqual((r.status, r.body), (200, b"space"))
        r = self.get("//in//real.txt")
        self.assertEqual((r.status, r.body), (200, b"inside"))
        r = self.get("/digits.txt?query=ignored")
        self.assertEqual((r.status, r.body), (200, b"0123456789"))

    def test_mime_types(self):
        for target, want in [("/assets/app.css", "text/css; charset=utf-8"),
                             ("/assets/logo.svg", "image/svg+xml"),
                             ("/assets/data.json", "application/json"),
                             ("/assets/upper.PNG", "image/png"),
                             ("/assets/blob.xyz", "application/octet-stream")]:
            with self.subTest(target=target):
                r = self.get(target, [("Accept-Encoding", "identity")])
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("content-type"), want)

    # ---- validators
    def test_validators_and_304(self):
        r = self.get("/digits.txt")
        etag, lm = r.header("etag"), r.header("last-modified")
        self.assertTrue(etag.startswith('"') and etag.endswith('"'), etag)  # strong
        self.assertTrue(lm.endswith(" GMT"), lm)
        self.assertEqual(r.header("content-length"), "10")
        self.assertEqual(r.header("accept-ranges"), "bytes")
        for headers in ([("If-None-Match", etag)], [("If-None-Match", f'"x", W/{etag}')],
                        [("If-None-Match", "*")], [("If-Modified-Since", lm)]):
            with self.subTest(headers=headers):
                r2 = self.get("/digits.txt", headers)
                self.assertEqual(r2.status, 304)
                self.assertEqual(r2.body, b"")
                self.assertEqual(r2.header("etag"), etag)
        r = self.get("/digits.txt", [("If-None-Match", '"other"'), ("If-Modified-Since", lm)])
        self.assertEqual(r.status, 200)  # If-None-Match wins over If-Modified-Since
        r = self.get("/digits.txt", [("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")])
        self.assertEqual(r.status, 200)
        r = self.get("/digits.txt", [("If-Match", '"other"')])
        self.assertEqual(r.status, 412)
        r = self.get("/digits.txt", [("If-Unmodified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")])
        self.assertEqual(r.status, 412)
        # A change of content changes the ETag.
        path = os.path.join(self.root, "changing.txt")
        with open(path, "wb") as f:
            f.write(b"one")
        e1 = self.get("/changing.txt").header("etag")
        time.sleep(0.01)
        with open(path, "wb") as f:
            f.write(b"two")
        r = self.get("/changing.txt", [("If-None-Match", e1)])
        self.assertEqual((r.status, r.body), (200, b"two"))
        self.assertNotEqual(r.header("etag"), e1)

    # ---- ranges
    def test_ranges(self):
        cases = [("bytes=0-3", 206, b"0123", "bytes 0-3/10"),
                 ("bytes=7-", 206, b"789", "bytes 7-9/10"),
                 ("bytes=-2", 206, b"89", "bytes 8-9/10"),
                 ("bytes=5-100", 206, b"56789", "bytes 5-9/10"),
                 ("bytes=10-", 416, None, "bytes */10"),
                 ("bytes=0-1,4-5", 200, b"0123456789", None),   # several ranges: the whole file
                 ("items=0-1", 200, b"0123456789", None),       # another unit: ignored
                 ("bytes=5-2", 200, b"0123456789", None)]       # invalid: ignored
        for value, status, body, content_range in cases:
            with self.subTest(range=value):
                r = self.get("/digits.txt", [("Range", value)])
                self.assertEqual(r.status, status)
                if body is not None:
                    self.assertEqual(r.body, body)
                self.assertEqual(r.header("content-range"), content_range)
        etag = self.get("/digits.txt").header("etag")
        r = self.get("/digits.txt", [("Range", "bytes=0-1"), ("If-Range", etag)])
        self.assertEqual((r.status, r.body), (206, b"01"))
        r = self.get("/digits.txt", [("Range", "bytes=0-1"), ("If-Range", '"stale"')])
        self.assertEqual((r.status, r.body), (200, b"0123456789"))

    # ---- methods
    def test_head_and_405(self):
        r = self.get("/digits.txt", method="HEAD")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-length"), "10")
        self.assertEqual(r.body, b"")
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            with self.subTest(method=method):
                r = http_request(self.port, method, "/digits.txt", [], b"x", "example.test")
                self.assertEqual(r.status, 405)
                self.assertEqual(r.header("allow"), "GET, HEAD")
        # The connection goes on after a 304, a 206 and a HEAD (keep-alive).
        with HttpConn(self.port) as c:
            for extra in (b"Range: bytes=0-0\r\n", b"If-None-Match: *\r\n", b""):
                c.send(b"GET /digits.txt HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
                self.assertIn(c.read_response().status, (200, 206, 304))
            c.send(b"HEAD /digits.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(c.read_response(method="HEAD").status, 200)

    # ---- precompressed
    def test_precompressed_variants(self):
        r = self.get("/assets/app.css", [("Accept-Encoding", "gzip, br")])
        self.assertEqual(r.header("content-encoding"), "br")
        self.assertEqual(brotli.decompress(r.body), CSS)
        self.assertEqual(r.header("vary"), "Accept-Encoding")
        self.assertEqual(r.header("content-type"), "text/css; charset=utf-8")
        r = self.get("/assets/app.css", [("Accept-Encoding", "gzip")])
        self.assertEqual(r.header("content-encoding"), "gzip")
        self.assertEqual(gzip.decompress(r.body), CSS)
        r = self.get("/assets/app.css", [("Accept-Encoding", "zstd")])  # no .zst: the original
        self.assertIsNone(r.header("content-encoding"))
        self.assertEqual(r.body, CSS)
        self.assertEqual(r.header("vary"), "Accept-Encoding")
        r = self.get("/assets/app.css", [("Accept-Encoding", "br;q=0, gzip;q=0.1")])
        self.assertEqual(r.header("content-encoding"), "gzip")
        # The variants have ETags of their own.
        e_br = self.get("/assets/app.css", [("Accept-Encoding", "br")]).header("etag")
        e_id = self.get("/assets/app.css").header("etag")
        self.assertNotEqual(e_br, e_id)
        r = self.get("/assets/app.css", [("Accept-Encoding", "br"), ("If-None-Match", e_br)])
        self.assertEqual(r.status, 304)
        # A variant is not a URL of its own... but it is a file under the root: served as such.
        r = self.get("/assets/app.css.gz")
        self.assertEqual(r.status, 200)

    # ---- other transports
    def test_http2_and_tls(self):
        path = os.path.join(self.base, "out.bin")
        big = os.path.join(self.root, "big.bin")
        with open(big, "wb") as f:
            f.write(os.urandom(3 << 20))
        with open(big, "rb") as f:
            want = f.read()
        for args, url in [(["--http2-prior-knowledge"], f"http://127.0.0.1:{self.port}/big.bin"),
                          (["--http1.1"], f"https://a.test:{self.tls_port}/big.bin"),
                          (["--http2"], f"https://a.test:{self.tls_port}/big.bin")]:
            with self.subTest(args=args, url=url):
                r = curl(url, *args, out=path, cacert=self.certs.ca,
                         resolve=f"a.test:{self.tls_port}:127.0.0.1")
                self.assertEqual((r.rc, r.code), (0, 200), r.stderr)
                with open(path, "rb") as f:
                    self.assertEqual(f.read(), want)
        r = curl(f"https://a.test:{self.tls_port}/digits.txt", "-r", "2-4", cacert=self.certs.ca,
                 resolve=f"a.test:{self.tls_port}:127.0.0.1")
        self.assertEqual((r.code, r.body), (206, b"234"))
        r = curl(f"http://127.0.0.1:{self.port}/../outside/secret.txt", "--path-as-is",
                 "--http2-prior-knowledge")
        self.assertEqual(r.code, 404)

    def test_file_that_shrinks_during_download_is_not_passed_off_as_whole(self):
        path = os.path.join(self.root, "shrinks.bin")
        with open(path, "wb") as f:
            f.write(b"x" * (64 << 20))
        with HttpConn(self.port) as c:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.send(b"GET /shrinks.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_head()
            self.assertEqual(r.header("content-length"), str(64 << 20))
            os.truncate(path, 1 << 20)
            got = len(c.buf)
            c.sock.settimeout(10)
            while True:
                chunk = c.sock.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
            self.assertLess(got, 64 << 20)  # closed early: the client sees a short body

    def test_one_gib_file_with_bounded_memory(self):
        pid = self.lb.pid
        self.get("/digits.txt")
        base = rss_anon(pid)
        peak = [base]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], rss_anon(pid))
                time.sleep(0.05)

        t = threading.Thread(target=watch)
        t.start()
        try:
            results = []
            for args, url in [(["--http1.1"], f"http://127.0.0.1:{self.port}/huge.bin"),
                              (["--http2-prior-knowledge"],
                               f"http://127.0.0.1:{self.port}/huge.bin"),
                              (["--http1.1"], f"https://a.test:{self.tls_port}/huge.bin")]:
                results.append(curl(url, *args, out="/dev/null", timeout=240,
                                    cacert=self.certs.ca,
                                    resolve=f"a.test:{self.tls_port}:127.0.0.1"))
        finally:
            done.set()
            t.join()
        for r in results:
            self.assertEqual((r.rc, r.code, r.size_download), (0, 200, GIB), r.stderr)
        self.assertLess(peak[0] - base, 16 << 20, f"RSS grew {(peak[0] - base) >> 20} MiB")


class StaticConfigTest(WeirTestCase):
    def test_config_errors(self):
        env = Env(self.addCleanup)
        base = tempfile.mkdtemp(prefix="weir-static-cfg-")
        self.addCleanup(shutil.rmtree, base, True)
        with open(os.path.join(base, "file"), "w") as f:
            f.write("x")
        cases = [
            ({"root": os.path.join(base, "missing")}, "No such file or directory"),
            ({"root": os.path.join(base, "file")}, "is not a directory"),
            ({"root": base, "index": "../x"}, "\"index\" is a file name"),
            ({"root": base, "listing": True}, "unknown key \"listing\""),
        ]
        for st, expected in cases:
            with self.subTest(st=st):
                cfg = {"listeners": [{"name": "web", "listen": f"127.0.0.1:{free_port()}",
                                      "routes": [{"match": {"path_prefix": "/"},
                                                  "static": st}]}]}
                path = env.write_config(cfg, "bad.yaml")
                p = env.run_weir("check", "-c", path)
                err = p.stderr.decode()
                self.assertEqual(p.returncode, 1, err)
                self.assertIn("bad.yaml:", err)
                self.assertIn(expected, err)


if __name__ == "__main__":
    unittest.main()
