"""cachetest: a scriptable, request-counting origin for the HTTP caching tests (test_cache.py).

Origin is a ScriptedServer (a thread per connection, HTTP/1.1 keep-alive) whose answer is
scripted per path by the test and which records every request it gets:

    origin.script("/a", Resp(headers=[("Cache-Control", "max-age=60")], body=b"x"))
    origin.script("/b", [Resp(...), Resp(...)])      # the i-th request gets the i-th (last repeats)
    origin.script("/c", lambda req, i: Resp(...))    # computed from the request and its index
    origin.count("/a"), origin.requests("/a")[1].header("if-none-match")

A Resp answers conditional requests by itself (conditional=True, the default): a GET whose
If-None-Match names its ETag, or whose If-Modified-Since equals its Last-Modified, gets a 304
with the Resp's fields (no body). A Resp without a Date field gets Date: now.
"""

from __future__ import annotations

import email.utils
import socket
import threading
import time

from weirtest import ScriptedServer


def http_date(offset: float = 0.0) -> str:
    """An IMF-fixdate `offset` seconds from now."""
    return email.utils.formatdate(time.time() + offset, usegmt=True)


class Req:
    """One request the origin received."""

    def __init__(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes):
        self.method, self.target, self.headers, self.body = method, target, headers, body
        self.path = target.split("?", 1)[0]
        self.time = time.monotonic()

    def header(self, name: str, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def __repr__(self):
        return f"<Req {self.method} {self.target} {self.headers}>"


class Resp:
    """A scripted answer."""

    def __init__(self, status: int = 200, headers=(), body: bytes = b"", delay: float = 0.0,
                 chunked: bool = False, conditional: bool = True, reason: str | None = None):
        self.status, self.headers, self.body = status, list(headers), body
        self.delay, self.chunked, self.conditional = delay, chunked, conditional
        self.reason = reason or {200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified",
                                 404: "Not Found", 500: "Internal Server Error",
                                 503: "Service Unavailable"}.get(status, "Whatever")

    def header(self, name: str, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default


class Origin:
    """The scripted origin (see the module docstring). stop() closes it (the port then refuses)."""

    def __init__(self):
        self.scripts: dict = {}
        self.log: list[Req] = []
        self.lock = threading.Lock()
        self.server = ScriptedServer(self._handle)
        self.port = self.server.port
        self.address = self.server.address

    def stop(self):
        self.server.stop()

    def script(self, path: str, what):
        with self.lock:
            self.scripts[path] = what

    def requests(self, path: str | None = None, method: str | None = None) -> list[Req]:
        with self.lock:
            return [r for r in self.log
                    if (path is None or r.path == path) and (method is None or r.method == method)]

    def count(self, path: str | None = None, method: str | None = None) -> int:
        return len(self.requests(path, method))

    # -- serving

    def _pick(self, req: Req) -> Resp:
        with self.lock:
            what = self.scripts.get(req.path)
            i = sum(1 for r in self.log if r.path == req.path) - 1  # this request's index
        if what is None:
            return Resp(404, [("Content-Type", "text/plain")], b"not scripted\n")
        if callable(what):
            return what(req, i)
        if isinstance(what, list):
            return what[min(i, len(what) - 1)]
        return what

    def _handle(self, c: socket.socket):
        buf = bytearray()

        def fill() -> bool:
            chunk = c.recv(65536)
            if not chunk:
                return False
            buf.extend(chunk)
            return True

        def line() -> bytes:
            while b"\r\n" not in buf:
                if not fill():
                    raise EOFError
            i = buf.index(b"\r\n")
            out = bytes(buf[:i])
            del buf[:i + 2]
            return out

        def take(n: int) -> bytes:
            while len(buf) < n:
                if not fill():
                    raise EOFError
            out = bytes(buf[:n])
            del buf[:n]
            return out

        while True:
            while b"\r\n\r\n" not in buf:
                if not fill():
                    return
            i = buf.index(b"\r\n\r\n")
            head = bytes(buf[:i]).decode("latin-1").split("\r\n")
            del buf[:i + 4]
            method, target = head[0].split(" ")[:2]
            headers = []
            for h in head[1:]:
                k, _, v = h.partition(":")
                headers.append((k.strip(), v.strip()))
            req = Req(method, target, headers, b"")
            body = b""
            if (req.header("transfer-encoding") or "").lower().endswith("chunked"):
                while True:
                    size = int(line().split(b";")[0], 16)
                    if size == 0:
                        while line():
                            pass
                        break
                    body += take(size)
                    take(2)
            elif req.header("content-length"):
                body = take(int(req.header("content-length")))
            req.body = body
            with self.lock:
                self.log.append(req)
            resp = self._pick(req)
            if resp.delay:
                time.sleep(resp.delay)
            c.sendall(self._encode(req, resp))

    @staticmethod
    def _not_modified(req: Req, resp: Resp) -> bool:
        if not resp.conditional or resp.status != 200 or req.method not in ("GET", "HEAD"):
            return False
        inm, etag = req.header("if-none-match"), resp.header("etag")
        if inm is not None:
            if etag is None:
                return False
            tags = [t.strip() for t in inm.split(",")]
            weak = lambda t: t[2:] if t.startswith("W/") else t  # noqa: E731
            return "*" in tags or weak(etag) in [weak(t) for t in tags]
        ims, lm = req.header("if-modified-since"), resp.header("last-modified")
        return ims is not None and lm is not None and ims == lm

    def _encode(self, req: Req, resp: Resp) -> bytes:
        status, reason, body = resp.status, resp.reason, resp.body
        if self._not_modified(req, resp):
            status, reason, body = 304, "Not Modified", b""
        fields = list(resp.headers)
        if resp.header("date") is None:
            fields.append(("Date", http_date()))
        out = f"HTTP/1.1 {status} {reason}\r\n"
        for k, v in fields:
            out += f"{k}: {v}\r\n"
        no_body = status in (204, 304) or req.method == "HEAD"
        if status != 304:
            if resp.chunked and not no_body:
                out += "Transfer-Encoding: chunked\r\n"
            elif resp.header("content-length") is None:
                out += f"Content-Length: {len(body)}\r\n"
        data = (out + "\r\n").encode("latin-1")
        if no_body:
            return data
        if resp.chunked:
            for i in range(0, len(body), 16384):
                part = body[i:i + 16384]
                data += b"%x\r\n%s\r\n" % (len(part), part)
            return data + b"0\r\n\r\n"
        return data + body
