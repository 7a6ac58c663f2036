"""tlstest: helpers for the TLS and HTTP/2 end-to-end tests, on top of weirtest.

- Certs: a test CA and leaf certificates made with the openssl CLI in a temp dir (one set per
  test class): RSA "a.test" (SAN a.test, *.wild.test), ECDSA P-256 "b.test", "backend.test" for
  a TLS origin, a self-signed "evil" backend.test, and on demand expired / expiring / rotated ones.
- Python TLS clients (served certificate, HTTP/1.1 over TLS), `openssl s_client`, curl, nghttp and
  h2load wrappers, every one with a timeout.
- TlsOrigin: an HTTPS origin server (Python ssl + http.server in threads) for re-encryption.
- H2Conn: a small HTTP/2 client over a socket built on hpack (the h2 library's HPACK layer) with
  hand-built frames, so that tests can send anything (bad headers, floods, resets, more streams
  than allowed) and keep reading after a GOAWAY (h2's own state machine refuses every frame
  after GOAWAY, which a graceful shutdown test needs).
- flood(), NormalTraffic (a second, well-behaved client that keeps requesting with curl while an
  attack runs), PeakRss (weir's RSS high-water growth), config builders for TLS listeners.

Stdlib + hpack only (python3-h2 brings it); Debian's /usr/bin/python3 runs them.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

import hpack

from weirtest import (HOST, HttpConn, WeirTestCase, _pdeathsig, check_sanitizers, degrade, free_port, hwm,
                      reset_hwm, rss, wait_port, wait_until)

# ASan (the debug build) keeps freed blocks in a quarantine of up to 256 MiB, which shows as RSS
# growth wherever memory churns: OpenSSL with SSL_MODE_RELEASE_BUFFERS frees and reallocates its
# record buffers all the time, so 100 MB through TLS "grows" weir by ~140 MiB with no buffering at
# all. The memory checks here are about buffering, so the processes these tests start get a small
# quarantine (use-after-free detection still works, over a shorter window). Set at import, before
# any process is spawned; an explicit quarantine_size_mb in ASAN_OPTIONS wins.
if "quarantine_size_mb" not in os.environ.get("ASAN_OPTIONS", ""):
    _asan = os.environ.get("ASAN_OPTIONS", "")
    os.environ["ASAN_OPTIONS"] = (_asan + ":" if _asan else "") + "quarantine_size_mb=16"

MB = 1024 * 1024
# A backstop: the allowed growth of the debug build's RSS high-water mark during one scenario.
# The designed bounds are exact block counts (h2_conn_blocks below, sampled with BufferWatch);
# this covers memory outside the buffer pool (nghttp2 sessions, OpenSSL, exchanges) plus ASan's
# slack (its quarantine, 16 MiB here, and shadow memory).
RSS_BUDGET = 64 * MB
NORMAL_BOUND = 2.0          # seconds: a well-behaved request during an attack must finish within this
IO = 10.0                   # default socket timeout


# ----------------------------------------------------------------------------------------------
# External tools

_TOOL_PACKAGES = {"openssl": "openssl", "curl": "curl", "nghttp": "nghttp2-client",
                  "h2load": "nghttp2-client", "nghttpd": "nghttp2-server"}


def tool(name: str) -> str:
    """The path of an external program, or a clear failure naming the Debian package."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if path is None:
        raise AssertionError(f"{name} not found: apt-get install {_TOOL_PACKAGES.get(name, name)} "
                             f"(scripts/deps.sh installs it)")
    return path


def run(args: list[str], timeout: float = 30.0, input: bytes | None = None, cwd: str | None = None,
        in_thread: bool = False) -> subprocess.CompletedProcess:
    """Runs a program to completion (bytes out/err). From the main thread the child dies with us
    (PDEATHSIG); from another thread preexec_fn is not safe, and every caller passes a timeout."""
    try:
        p = subprocess.run(args, capture_output=True, timeout=timeout, input=input, cwd=cwd,
                           stdin=None if input is not None else subprocess.DEVNULL,
                           preexec_fn=None if in_thread else _pdeathsig)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{os.path.basename(args[0])} did not finish within {timeout}s: "
                             f"{' '.join(args)}\n{(e.stderr or b'').decode('utf-8', 'replace')[-2000:]}") from None
    # Like every process the tests start: a sanitizer report in its stderr fails the test.
    check_sanitizers(p.stderr, os.path.basename(args[0]))
    return p


def _text(b: bytes) -> str:
    return (b or b"").decode("utf-8", "replace")


# ----------------------------------------------------------------------------------------------
# Certificates (openssl CLI)


class Cert:
    """A certificate file and its key file, with what the tests compare against."""

    def __init__(self, path: str, key: str, cn: str, sans: list[str], serial: int, kind: str):
        self.path, self.key, self.cn, self.sans, self.serial, self.kind = path, key, cn, sans, serial, kind
        with open(path) as f:
            pem = f.read()
        first = pem[:pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")] + "\n"
        self.der = ssl.PEM_cert_to_DER_cert(first)

    def __repr__(self):
        return f"<Cert CN={self.cn} serial={self.serial:x} {self.kind} {os.path.basename(self.path)}>"


def der_summary(der: bytes | None) -> str:
    """`subject / serial / SAN` of a DER certificate (openssl x509), for messages."""
    if not der:
        return "(no certificate)"
    p = run([tool("openssl"), "x509", "-inform", "DER", "-noout", "-subject", "-serial",
             "-ext", "subjectAltName"], input=der, timeout=10)
    return " ".join(_text(p.stdout).split())


class Certs:
    """A test CA and the certificates of the TLS tests, made in `folder` with the openssl CLI."""

    def __init__(self, folder: str):
        self.dir = folder
        self._serial = int.from_bytes(os.urandom(6), "big") << 8
        self.openssl = tool("openssl")
        self.ca_key = self._key("ca", "ec")  # EC keys where the kind does not matter: fast to make
        self.ca = os.path.join(folder, "ca.pem")
        self._ssl(["req", "-x509", "-new", "-key", self.ca_key, "-out", self.ca, "-days", "3650",
                   "-sha256", "-subj", "/CN=weir e2e test CA",
                   "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                   "-addext", "subjectKeyIdentifier=hash"])
        self.a = self.leaf("a", "a.test", ["a.test", "*.wild.test"], kind="rsa")
        self.b = self.leaf("b", "b.test", ["b.test"], kind="ec")
        self.backend = self.leaf("backend", "backend.test", ["backend.test"], kind="ec")
        self.evil = self.self_signed("evil", "backend.test", ["backend.test"])

    def _ssl(self, args: list[str], timeout: float = 60.0):
        p = run([self.openssl, *args], timeout=timeout, cwd=self.dir)
        if p.returncode != 0:
            raise AssertionError(f"openssl {' '.join(args)} failed:\n{_text(p.stderr)[-2000:]}")
        return p

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _key(self, stem: str, kind: str) -> str:
        path = os.path.join(self.dir, f"{stem}.key")
        if kind == "rsa":
            self._ssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path])
        elif kind == "ec":
            self._ssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path])
        else:
            raise ValueError(kind)
        return path

    def _ext(self, stem: str, sans: list[str], kind: str) -> str:
        usage = "digitalSignature,keyEncipherment" if kind == "rsa" else "digitalSignature"
        san = ",".join((f"IP:{s}" if re.fullmatch(r"[\d.]+", s) else f"DNS:{s}") for s in sans)
        path = os.path.join(self.dir, f"{stem}.ext")
        with open(path, "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    f"keyUsage=critical,{usage}\n"
                    "extendedKeyUsage=serverAuth\n"
                    f"subjectAltName={san}\n"
                    "subjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid\n")
        return path

    def leaf(self, stem: str, cn: str, sans: list[str], kind: str = "ec", days: int = 30,
             org: str | None = None) -> Cert:
        """A certificate signed by the test CA, valid from now for `days` days."""
        key = self._key(stem, kind)
        csr = os.path.join(self.dir, f"{stem}.csr")
        subj = f"/CN={cn}" + (f"/O={org}" if org else "")
        self._ssl(["req", "-new", "-key", key, "-subj", subj, "-out", csr])
        serial = self._next_serial()
        path = os.path.join(self.dir, f"{stem}.pem")
        self._ssl(["x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-set_serial",
                   str(serial), "-days", str(days), "-sha256", "-extfile", self._ext(stem, sans, kind),
                   "-out", path])
        return Cert(path, key, cn, sans, serial, kind)

    def self_signed(self, stem: str, cn: str, sans: list[str]) -> Cert:
        key = self._key(stem, "ec")
        path = os.path.join(self.dir, f"{stem}.pem")
        serial = self._next_serial()
        self._ssl(["req", "-x509", "-new", "-key", key, "-subj", f"/CN={cn}", "-days", "30", "-sha256",
                   "-set_serial", str(serial),
                   "-addext", "subjectAltName=" + ",".join(f"DNS:{s}" for s in sans),
                   "-addext", "basicConstraints=CA:FALSE", "-out", path])
        return Cert(path, key, cn, sans, serial, "ec")

    def expired(self, stem: str, cn: str, sans: list[str]) -> Cert:
        """Signed by the test CA, valid 2020-01-01 .. 2021-01-01 (`openssl ca` can set both dates;
        `x509 -req` cannot on OpenSSL 3.0)."""
        key = self._key(stem, "ec")
        csr = os.path.join(self.dir, f"{stem}.csr")
        self._ssl(["req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", csr])
        db = os.path.join(self.dir, f"cadb-{stem}")
        os.makedirs(db, exist_ok=True)
        open(os.path.join(db, "index.txt"), "w").close()
        serial = self._next_serial()
        with open(os.path.join(db, "serial"), "w") as f:
            f.write(f"{serial:X}" if len(f"{serial:X}") % 2 == 0 else f"0{serial:X}")
        cnf = os.path.join(db, "ca.cnf")
        with open(cnf, "w") as f:
            f.write("[ca]\ndefault_ca = testca\n[testca]\n"
                    f"database = {db}/index.txt\nnew_certs_dir = {db}\nserial = {db}/serial\n"
                    "default_md = sha256\npolicy = anything\nunique_subject = no\nemail_in_dn = no\n"
                    "[anything]\ncommonName = supplied\n"
                    "[leaf]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n"
                    "subjectAltName = " + ",".join(f"DNS:{s}" for s in sans) + "\n")
        path = os.path.join(self.dir, f"{stem}.pem")
        self._ssl(["ca", "-batch", "-config", cnf, "-cert", self.ca, "-keyfile", self.ca_key, "-in", csr,
                   "-out", path, "-startdate", "20200101000000Z", "-enddate", "20210101000000Z",
                   "-extensions", "leaf", "-notext"])
        return Cert(path, key, cn, sans, serial, "ec")

    def copy(self, cert: Cert, folder: str, stem: str) -> Cert:
        """The same certificate and key copied to folder/stem.pem and .key (a test may replace them)."""
        path, key = os.path.join(folder, f"{stem}.pem"), os.path.join(folder, f"{stem}.key")
        shutil.copyfile(cert.path, path)
        shutil.copyfile(cert.key, key)
        return Cert(path, key, cert.cn, cert.sans, cert.serial, cert.kind)


def replace_cert(dest: Cert, src: Cert) -> Cert:
    """Atomically replaces dest's cert and key files with src's (each with a rename)."""
    for s, d in ((src.path, dest.path), (src.key, dest.key)):
        tmp = d + ".new"
        shutil.copyfile(s, tmp)
        os.replace(tmp, d)
    return Cert(dest.path, dest.key, src.cn, src.sans, src.serial, src.kind)


# ----------------------------------------------------------------------------------------------
# Python TLS clients


def client_context(cafile: str | None = None, alpn: list[str] | None = None,
                   min_version: ssl.TLSVersion | None = None,
                   max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context: verifies against cafile (and the name) when given, else verifies nothing."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def tls_connect(port: int, sni: str | None = "a.test", cafile: str | None = None,
                alpn: list[str] | None = None, timeout: float = IO, **ctx_kw) -> ssl.SSLSocket:
    """A TLS connection to HOST:port, handshake done. sni None (or an IP) sends no SNI."""
    ctx = client_context(cafile, alpn, **ctx_kw)
    raw = socket.create_connection((HOST, port), timeout=timeout)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ctx.wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


def served_cert(port: int, sni: str | None, timeout: float = IO, **kw) -> bytes:
    """The DER of the leaf certificate weir serves for that SNI (None: no SNI)."""
    with tls_connect(port, sni, timeout=timeout, **kw) as s:
        return s.getpeercert(binary_form=True)


def https_conn(port: int, sni: str | None = "a.test", cafile: str | None = None, timeout: float = IO,
               alpn: list[str] | None = None, **kw) -> HttpConn:
    """weirtest's HttpConn over TLS; .cert_der, .tls_version and .alpn tell about the session."""
    s = tls_connect(port, sni, cafile, alpn, timeout, **kw)
    c = HttpConn.__new__(HttpConn)
    c.sock, c.buf, c.eof = s, bytearray(), False
    c.cert_der = s.getpeercert(binary_form=True)
    c.tls_version = s.version()
    c.alpn = s.selected_alpn_protocol()
    c.resumed = s.session_reused
    return c


def https_get(port: int, target: str = "/", sni: str | None = "a.test", cafile: str | None = None,
              host: str | None = None, headers=None, timeout: float = IO, **kw):
    """One GET over a new TLS connection (Host defaults to the SNI name); the Response gets
    .cert_der and .tls_version."""
    with https_conn(port, sni, cafile, timeout, **kw) as c:
        r = c.get(target, headers=headers, host=host or sni or HOST)
        r.cert_der, r.tls_version = c.cert_der, c.tls_version
        return r


# ----------------------------------------------------------------------------------------------
# openssl s_client


class SClient:
    def __init__(self, p: subprocess.CompletedProcess, args):
        self.args = args
        self.rc = p.returncode
        self.text = _text(p.stdout) + _text(p.stderr)
        m = re.search(r"^(?:New|Reused), (TLSv[\d.]+|SSLv3|\(NONE\)), Cipher is (\S+)", self.text, re.M)
        self.accepted = bool(m) and m.group(2) != "(NONE)"
        pm = re.search(r"^\s*Protocol\s*: (\S+)", self.text, re.M)
        self.version = pm.group(1) if pm else (m.group(1) if m else None)
        self.cipher = m.group(2) if m else None
        self.reused = bool(re.search(r"^Reused, ", self.text, re.M))
        sm = re.search(r"^subject=(.*)$", self.text, re.M)
        self.subject = sm.group(1).strip() if sm else None
        self.alpn = None
        am = re.search(r"^ALPN protocol: (\S+)", self.text, re.M)
        if am:
            self.alpn = am.group(1)

    def __repr__(self):
        return (f"<s_client {' '.join(self.args)}: rc={self.rc} accepted={self.accepted} "
                f"version={self.version} cipher={self.cipher} reused={self.reused}>")

    def tail(self, n: int = 1500) -> str:
        return self.text[-n:]


def s_client(port: int, *args: str, servername: str | None = None, input: bytes = b"",
             timeout: float = 20.0) -> SClient:
    """`openssl s_client -connect 127.0.0.1:PORT [-servername X | -noservername] ARGS` with input
    on stdin (s_client ends at its EOF unless -ign_eof)."""
    cmd = [tool("openssl"), "s_client", "-connect", f"{HOST}:{port}"]
    cmd += ["-servername", servername] if servername else ["-noservername"]
    cmd += list(args)
    return SClient(run(cmd, timeout=timeout, input=input), cmd[2:])


# ----------------------------------------------------------------------------------------------
# curl, nghttp, h2load


class Curl:
    """What one curl run did: rc, code, version ("1.1", "2"), sizes, time, headers, body."""

    def __init__(self, p: subprocess.CompletedProcess, cmd: list[str], headers_text: str):
        self.cmd = cmd
        self.rc = p.returncode
        err = _text(p.stderr)
        marker = err.rfind("@@WEIRCURL@@")
        self.info = {}
        if marker >= 0:
            try:
                self.info = json.loads(err[marker + len("@@WEIRCURL@@"):].strip().splitlines()[0])
            except (ValueError, IndexError):
                self.info = {}
            err = err[:marker]
        self.stderr = err
        self.body = p.stdout or b""
        self.code = int(self.info.get("response_code") or self.info.get("http_code") or 0)
        self.version = str(self.info.get("http_version", ""))
        self.size_download = int(self.info.get("size_download") or 0)
        self.size_upload = int(self.info.get("size_upload") or 0)
        self.time_total = float(self.info.get("time_total") or 0.0)
        self.errormsg = self.info.get("errormsg")
        # The headers of the last response, and the trailer fields curl writes after them (a
        # block without a status line).
        blocks = [b for b in re.split(r"\r?\n\r?\n", headers_text) if b.strip()]
        heads = [i for i, b in enumerate(blocks) if b.startswith("HTTP/")]
        self.headers: list[tuple[str, str]] = []
        self.trailers: list[tuple[str, str]] = []
        if heads:
            for line in blocks[heads[-1]].splitlines()[1:]:
                k, _, v = line.partition(":")
                self.headers.append((k.strip(), v.strip()))
            for block in blocks[heads[-1] + 1:]:
                for line in block.splitlines():
                    k, _, v = line.partition(":")
                    self.trailers.append((k.strip(), v.strip()))
        subj = re.findall(r"^\*\s+subject: (.*)$", err, re.M)
        self.subject = subj[0].strip() if subj else None

    @property
    def text(self) -> str:
        return _text(self.body)

    def header(self, name: str, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def whoami_name(self):
        first = self.text.split("\n", 1)[0]
        return first[6:] if first.startswith("Name: ") else None

    def whoami_field(self, key: str):
        for line in self.text.split("\n"):
            if line.startswith(key + ": "):
                return line[len(key) + 2:]
        return None

    def __repr__(self):
        return (f"<curl rc={self.rc} code={self.code} http/{self.version} {self.size_download}B "
                f"{self.time_total:.3f}s err={self.errormsg!r}>")

    def describe(self) -> str:
        return f"{self!r}\n$ {' '.join(self.cmd)}\n{self.stderr[-1500:]}"


def curl(url: str, *args: str, resolve: list[str] | str | None = None, cacert: str | None = None,
         timeout: float = 30.0, out: str | None = None, verbose: bool = False,
         in_thread: bool = False) -> Curl:
    """curl URL ARGS with --max-time; the body comes back in .body unless out (a path, e.g.
    /dev/null) is given. resolve: "host:port:addr" entries for --resolve."""
    fd, hpath = tempfile.mkstemp(prefix="weir-curl-h-")
    os.close(fd)
    try:
        cmd = [tool("curl"), "-sS", "--max-time", str(timeout), "--connect-timeout", "10",
               "-D", hpath, "-o", out or "-", "-w", "%{stderr}@@WEIRCURL@@%{json}\n"]
        if verbose:
            cmd.append("-v")
        for r in ([resolve] if isinstance(resolve, str) else (resolve or [])):
            cmd += ["--resolve", r]
        if cacert:
            cmd += ["--cacert", cacert]
        cmd += list(args) + [url]
        p = run(cmd, timeout=timeout + 15, in_thread=in_thread)
        with open(hpath, "rb") as f:
            headers_text = _text(f.read())
        return Curl(p, cmd, headers_text)
    finally:
        os.unlink(hpath)


class Nghttp:
    def __init__(self, p: subprocess.CompletedProcess, cmd):
        self.cmd, self.rc = cmd, p.returncode
        self.out = _text(p.stdout) + _text(p.stderr)
        self.statuses = [int(s) for s in re.findall(r"recv \(stream_id=\d+\) :status: (\d+)", self.out)]
        self.stream_ids = sorted({int(s) for s in re.findall(r"recv \(stream_id=(\d+)\) :status:", self.out)})
        self.connects = len(re.findall(r"\] Connected", self.out))
        self.goaway = re.findall(r"recv GOAWAY frame.*?\n(?:.*\n){0,3}", self.out)
        a = re.search(r"(?i)negotiated protocol: (\S+)", self.out)
        self.negotiated = a.group(1) if a else None

    def describe(self) -> str:
        return f"nghttp rc={self.rc}: {' '.join(self.cmd)}\n{self.out[-3000:]}"


def nghttp(url: str, *args: str, timeout: float = 30.0) -> Nghttp:
    """nghttp -v ARGS URL (prior knowledge for http://, ALPN h2 for https://; no cert checks)."""
    cmd = [tool("nghttp"), "-v", "--timeout", f"{int(timeout)}", *args, url]
    return Nghttp(run(cmd, timeout=timeout + 15), cmd)


class H2load:
    def __init__(self, p: subprocess.CompletedProcess, cmd):
        self.cmd, self.rc = cmd, p.returncode
        self.out = _text(p.stdout) + _text(p.stderr)
        m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", self.out)
        self.s2xx, self.s3xx, self.s4xx, self.s5xx = (int(x) for x in m.groups()) if m else (0, 0, 0, 0)
        r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                      r"(\d+) errored, (\d+) timeout", self.out)
        self.total, self.started, self.done, self.succeeded, self.failed, self.errored, self.timeouts = \
            (int(x) for x in r.groups()) if r else (0,) * 7
        a = re.search(r"Application protocol: (\S+)", self.out)
        self.protocol = a.group(1) if a else None

    def describe(self) -> str:
        return f"h2load rc={self.rc}: {' '.join(self.cmd)}\n{self.out[-3000:]}"


def h2load(url: str, *args: str, timeout: float = 180.0) -> H2load:
    cmd = [tool("h2load"), *args, url]
    return H2load(run(cmd, timeout=timeout), cmd)


# ----------------------------------------------------------------------------------------------
# An HTTPS origin server (re-encryption tests)


class TlsOrigin:
    """HTTPS/1.1 on 127.0.0.1 (http.server in threads): every request gets 200 and a body
    `Origin: NAME`, the request line and headers. Records the SNI names it saw and counts the
    requests it answered; failed handshakes are counted, not printed."""

    def __init__(self, cert: Cert, name: str):
        self.name = name
        self.requests = 0
        self.handshake_failures = 0
        self.sni: list[str | None] = []
        self._lock = threading.Lock()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert.path, cert.key)
        ctx.set_alpn_protocols(["http/1.1"])

        def on_sni(sock, server_name, _ctx):
            with self._lock:
                self.sni.append(server_name)

        ctx.sni_callback = on_sni
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                got = len(self.rfile.read(n)) if n else 0
                body = (f"Origin: {origin.name}\n{self.command} {self.path} {self.request_version}\n" +
                        "".join(f"{k}: {v}\n" for k, v in self.headers.items()) +
                        (f"Body-Length: {got}\n" if n else "")).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with origin._lock:
                    origin.requests += 1

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                sock.settimeout(IO)
                return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

            def finish_request(self, request, client_address):
                try:
                    request.do_handshake()
                except (ssl.SSLError, OSError):
                    with origin._lock:
                        origin.handshake_failures += 1
                    return
                super().finish_request(request, client_address)

            def handle_error(self, request, client_address):
                pass

        self.server = Server((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        self.address = f"{HOST}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)
        self._thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def counting_backend_handler(stats: dict, lock: threading.Lock):
    """A weirtest.ScriptedServer handler: HTTP/1.1 keep-alive, answers `200 ok` to each whole
    request; stats["heads"] counts request heads seen, stats["complete"] whole requests
    (Content-Length bodies read in full), stats["lines"] the request lines."""

    def handler(c: socket.socket):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, _, buf = buf.partition(b"\r\n\r\n")
            with lock:
                stats["heads"] = stats.get("heads", 0) + 1
                stats.setdefault("lines", []).append(head.split(b"\r\n", 1)[0].decode("latin-1"))
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            need = int(m.group(1)) if m else 0
            if re.search(rb"(?im)^transfer-encoding:", head):
                return  # not expected from weir in these tests: count the head only
            while len(buf) < need:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            buf = buf[need:]
            with lock:
                stats["complete"] = stats.get("complete", 0) + 1
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")

    return handler


# ----------------------------------------------------------------------------------------------
# HTTP/2 frames

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
FRAME_NAMES = {DATA: "DATA", HEADERS: "HEADERS", PRIORITY: "PRIORITY", RST_STREAM: "RST_STREAM",
               SETTINGS: "SETTINGS", PUSH_PROMISE: "PUSH_PROMISE", PING: "PING", GOAWAY: "GOAWAY",
               WINDOW_UPDATE: "WINDOW_UPDATE", CONTINUATION: "CONTINUATION"}
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM, \
    INADEQUATE_SECURITY, HTTP_1_1_REQUIRED = range(14)
ERROR_NAMES = {v: k for k, v in dict(
    NO_ERROR=0, PROTOCOL_ERROR=1, INTERNAL_ERROR=2, FLOW_CONTROL_ERROR=3, SETTINGS_TIMEOUT=4,
    STREAM_CLOSED=5, FRAME_SIZE_ERROR=6, REFUSED_STREAM=7, CANCEL=8, COMPRESSION_ERROR=9,
    CONNECT_ERROR=10, ENHANCE_YOUR_CALM=11, INADEQUATE_SECURITY=12, HTTP_1_1_REQUIRED=13).items()}

S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, \
    S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = range(1, 7)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def err_name(code) -> str:
    return ERROR_NAMES.get(code, str(code)) if code is not None else "None"


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid & 0x7FFFFFFF) + payload


def settings_frame(settings: dict | None = None, ack: bool = False) -> bytes:
    payload = b"".join(struct.pack(">HI", k, v) for k, v in (settings or {}).items())
    return frame(SETTINGS, ACK if ack else 0, 0, payload)


def rst_frame(sid: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def window_update_frame(sid: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", increment & 0x7FFFFFFF))


def ping_frame(data: bytes = b"\0" * 8, ack: bool = False) -> bytes:
    return frame(PING, ACK if ack else 0, 0, data)


def priority_frame(sid: int, depends_on: int, weight: int = 16, exclusive: bool = False) -> bytes:
    dep = (depends_on & 0x7FFFFFFF) | (0x80000000 if exclusive else 0)
    return frame(PRIORITY, 0, sid, struct.pack(">IB", dep, weight - 1))


def goaway_frame(last_sid: int, code: int = NO_ERROR, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_sid, code) + debug)


# HPACK by hand: stateless header blocks (static-table indexes and literals without indexing),
# identical every time, so that floods can be built once and sent many times.

def hpack_int(value: int, prefix_bits: int, flags: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([flags | value])
    out = bytearray([flags | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s) -> bytes:
    b = s.encode("latin-1") if isinstance(s, str) else bytes(s)
    return hpack_int(len(b), 7) + b


def hpack_indexed(index: int) -> bytes:
    return hpack_int(index, 7, 0x80)


def hpack_literal(name, value, name_index: int | None = None, indexing: bool = False) -> bytes:
    """A literal field: with incremental indexing (adds to the dynamic table) or without."""
    bits, flag = (6, 0x40) if indexing else (4, 0x00)
    if name_index is not None:
        return hpack_int(name_index, bits, flag) + hpack_str(value)
    return bytes([flag]) + hpack_str(name) + hpack_str(value)


_STATIC_NAME = {":authority": 1, ":method": 2, ":path": 4, ":scheme": 6, ":status": 8,
                "content-length": 28, "content-type": 31, "user-agent": 58}
_STATIC_FULL = {(":method", "GET"): 2, (":method", "POST"): 3, (":path", "/"): 4,
                (":scheme", "http"): 6, (":scheme", "https"): 7}


def static_block(headers) -> bytes:
    """A stateless header block: fully indexed static entries where they exist, else literals
    without indexing (static name index when there is one)."""
    out = b""
    for k, v in headers:
        if (k, v) in _STATIC_FULL:
            out += hpack_indexed(_STATIC_FULL[(k, v)])
        elif k in _STATIC_NAME:
            out += hpack_literal(k, v, name_index=_STATIC_NAME[k])
        else:
            out += hpack_literal(k, v)
    return out


def request_headers(path: str = "/", method: str = "GET", authority: str = "a.test",
                    scheme: str = "http", extra=()) -> list[tuple[str, str]]:
    return [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path), *extra]


class H2Stream:
    def __init__(self, sid: int):
        self.sid = sid
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.trailers: list[tuple[str, str]] = []
        self.data_len = 0
        self.body = bytearray()
        self.ended = False
        self.reset: int | None = None  # RST_STREAM error code received
        self.end_order: int | None = None
        self.t_end: float | None = None
        self.unacked = 0  # DATA bytes not yet given back with a stream WINDOW_UPDATE

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def header(self, name: str, default=None):
        for k, v in self.headers:
            if k == name.lower():
                return v
        return default

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def whoami_field(self, key: str):
        for line in self.text.split("\n"):
            if line.startswith(key + ": "):
                return line[len(key) + 2:]
        return None

    def __repr__(self):
        st = "ended" if self.ended else ("reset " + err_name(self.reset) if self.reset is not None else "open")
        return f"<stream {self.sid} status={self.status} {self.data_len}B {st}>"


class H2Conn:
    """An HTTP/2 client connection (prior knowledge on clear text, ALPN h2 over TLS), one thread.

    Frames are built by hand and parsed by hand, header blocks use hpack, so anything can be
    sent. Incoming SETTINGS and PING are acknowledged (unless auto_ack is off), DATA is given
    back with WINDOW_UPDATE at once (connection level always; stream level unless the stream is
    in .hold). Nothing is validated: the tests look at what arrived."""

    def __init__(self, port: int, *, tls: bool = False, sni: str | None = "a.test", cafile: str | None = None,
                 authority: str | None = None, timeout: float = IO, settings: dict | None = None,
                 rcvbuf: int | None = None, sndbuf: int | None = None, auto_ack: bool = True,
                 keep_body: int = 1 << 20, preface: bool = True):
        self.port, self.tls = port, tls
        self.scheme = "https" if tls else "http"
        self.authority = authority or (f"{sni}:{port}" if tls and sni else f"{HOST}:{port}")
        self.timeout = timeout
        self.auto_ack = auto_ack
        self.keep_body = keep_body
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        raw.settimeout(timeout)
        try:
            raw.connect((HOST, port))
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                ctx = client_context(cafile, ["h2"])
                self.sock = ctx.wrap_socket(raw, server_hostname=sni)
                self.alpn = self.sock.selected_alpn_protocol()
                if self.alpn != "h2":
                    raise AssertionError(f"weir did not negotiate h2 over TLS (ALPN: {self.alpn!r})")
            else:
                self.sock = raw
                self.alpn = None
        except BaseException:
            raw.close()
            raise
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder(max_header_list_size=1 << 24)
        self.streams: dict[int, H2Stream] = {}
        self.next_sid = 1
        self.buf = bytearray()
        self.closed = False          # EOF or reset seen
        self.close_reason = ""
        self.goaway: tuple[int, int, bytes] | None = None   # (last_stream_id, code, debug)
        self.goaways: list[tuple[int, int, bytes]] = []
        self.peer_settings: dict[int, int] = {}
        self.settings_received = 0
        self.settings_acked = 0
        self.pings_acked: list[bytes] = []
        self.frames_in: dict[str, int] = {}
        self.bytes_in = 0
        self.bytes_out = 0
        self.hold: set[int] = set()
        self.conn_send_window = 65535
        self.stream_send_window: dict[int, int] = {}
        self.conn_unacked = 0
        self._hdr_sid = 0
        self._hdr_frag = b""
        self._hdr_end_stream = False
        self._hdr_push = False
        self._ends = 0
        self.protocol_errors: list[str] = []
        if preface:
            ours = {S_ENABLE_PUSH: 0}
            ours.update(settings or {})
            self.send(PREFACE + settings_frame(ours))

    # -- plumbing

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes, timeout: float | None = None):
        """sendall; raises ConnectionError-ish OSError when the peer is gone (see try_send)."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        self.sock.sendall(data)
        self.bytes_out += len(data)

    def try_send(self, data: bytes, timeout: float | None = None) -> str | None:
        """None if sent; "closed" if the peer closed/reset; "timeout" if it stopped reading."""
        try:
            self.send(data, timeout)
            return None
        except (socket.timeout, ssl.SSLWantWriteError):
            return "timeout"
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, ssl.SSLError, OSError) as e:
            self.closed = True
            self.close_reason = self.close_reason or f"send: {e!r}"
            return "closed"

    def pump(self, timeout: float) -> bool:
        """Reads what arrives within timeout (0: only what is there) and handles it. False once
        the peer has closed."""
        if self.closed:
            return False
        try:
            self.sock.settimeout(max(timeout, 0.0005))
            data = self.sock.recv(1 << 18)
        except (socket.timeout, ssl.SSLWantReadError, BlockingIOError):
            return True
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, ssl.SSLError, OSError) as e:
            self.closed = True
            self.close_reason = f"recv: {e!r}"
            return False
        if not data:
            self.closed = True
            self.close_reason = "EOF"
            return False
        self.bytes_in += len(data)
        self.buf += data
        self._parse()
        self._give_back()
        return True

    def drain(self, limit: float = 0.0):
        """Handles everything already received (and whatever arrives within limit seconds)."""
        deadline = time.monotonic() + limit
        while not self.closed:
            before = self.bytes_in
            self.pump(max(0.0, deadline - time.monotonic()) if limit else 0.0)
            if self.bytes_in == before and time.monotonic() >= deadline:
                return

    def run_until(self, predicate, timeout: float = IO) -> bool:
        """Pumps until predicate() is true (True) or the deadline passes / the peer closes (False)."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return bool(predicate())
            self.pump(min(left, 0.5))

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """True once the peer closes the connection (reading and handling all that comes)."""
        return self.run_until(lambda: self.closed, timeout)

    def wait_settings(self, timeout: float = IO) -> bool:
        return self.run_until(lambda: self.settings_received > 0, timeout)

    def sync(self, timeout: float = IO) -> bool:
        """A PING round trip: True once weir has acknowledged it (so it has handled everything
        sent before); False if it closed or sent GOAWAY first, or on timeout."""
        token = os.urandom(8)
        if self.try_send(ping_frame(token)):
            return False
        return self.run_until(lambda: token in self.pings_acked or self.closed, timeout) and token in self.pings_acked

    # -- incoming frames

    def _count(self, ftype: int):
        name = FRAME_NAMES.get(ftype, str(ftype))
        self.frames_in[name] = self.frames_in.get(name, 0) + 1

    def stream(self, sid: int) -> H2Stream:
        s = self.streams.get(sid)
        if s is None:
            s = self.streams[sid] = H2Stream(sid)
        return s

    def _end(self, s: H2Stream):
        if s.t_end is None:
            s.t_end = time.monotonic()
            self._ends += 1
            s.end_order = self._ends

    def _parse(self):
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[0:3], "big")
            if len(self.buf) < 9 + length:
                return
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self.buf[9:9 + length])
            del self.buf[:9 + length]
            self._count(ftype)
            try:
                self._frame(ftype, flags, sid, payload)
            except Exception as e:  # noqa: BLE001 - record, the test decides
                self.protocol_errors.append(f"{FRAME_NAMES.get(ftype, ftype)} on {sid}: {e!r}")

    def _unpad(self, flags: int, payload: bytes) -> bytes:
        if flags & PADDED:
            pad = payload[0]
            return payload[1:len(payload) - pad]
        return payload

    def _frame(self, ftype: int, flags: int, sid: int, payload: bytes):
        if ftype == DATA:
            s = self.stream(sid)
            data = self._unpad(flags, payload)
            s.data_len += len(data)
            if len(s.body) < self.keep_body:
                s.body += data[:self.keep_body - len(s.body)]
            self.conn_unacked += len(payload)
            if not (flags & END_STREAM):
                s.unacked += len(payload)
            if flags & END_STREAM:
                s.ended = True
                self._end(s)
        elif ftype in (HEADERS, PUSH_PROMISE):
            p = self._unpad(flags, payload)
            if ftype == HEADERS and flags & PRIORITY_FLAG:
                p = p[5:]
            if ftype == PUSH_PROMISE:
                p = p[4:]
            self._hdr_sid, self._hdr_frag = sid, p
            self._hdr_end_stream = bool(flags & END_STREAM) and ftype == HEADERS
            self._hdr_push = ftype == PUSH_PROMISE
            if flags & END_HEADERS:
                self._headers_done()
        elif ftype == CONTINUATION:
            self._hdr_frag += payload
            if flags & END_HEADERS:
                self._headers_done()
        elif ftype == RST_STREAM:
            s = self.stream(sid)
            s.reset = int.from_bytes(payload[:4], "big")
            self._end(s)
        elif ftype == SETTINGS:
            if flags & ACK:
                self.settings_acked += 1
            else:
                for i in range(0, len(payload) - 5, 6):
                    k, v = struct.unpack(">HI", payload[i:i + 6])
                    if k == S_INITIAL_WINDOW_SIZE:
                        delta = v - self.peer_settings.get(S_INITIAL_WINDOW_SIZE, 65535)
                        for x in self.stream_send_window:
                            self.stream_send_window[x] += delta
                    self.peer_settings[k] = v
                self.settings_received += 1
                if self.auto_ack:
                    self.try_send(settings_frame(ack=True))
        elif ftype == PING:
            if flags & ACK:
                self.pings_acked.append(payload)
            elif self.auto_ack:
                self.try_send(ping_frame(payload, ack=True))
        elif ftype == GOAWAY:
            last, code = struct.unpack(">II", payload[:8])
            self.goaway = (last & 0x7FFFFFFF, code, payload[8:])
            self.goaways.append(self.goaway)
        elif ftype == WINDOW_UPDATE:
            inc = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            if sid == 0:
                self.conn_send_window += inc
            else:
                self.stream_send_window[sid] = self.stream_send_window.get(sid, self._initial_send()) + inc

    def _headers_done(self):
        sid, block = self._hdr_sid, self._hdr_frag
        self._hdr_frag = b""
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.decoder.decode(block, raw=True)]
        if self._hdr_push:
            return
        s = self.stream(sid)
        status = dict(headers).get(":status")
        if status is not None and (s.status is None or s.status < 200):
            s.status = int(status)
            s.headers = headers
        elif status is None:
            s.trailers = headers
        if self._hdr_end_stream:
            s.ended = True
            self._end(s)

    def _give_back(self):
        out = b""
        if self.conn_unacked:
            out += window_update_frame(0, self.conn_unacked)
            self.conn_unacked = 0
        for s in self.streams.values():
            if s.unacked and not s.done and s.sid not in self.hold:
                out += window_update_frame(s.sid, s.unacked)
                s.unacked = 0
        if out:
            self.try_send(out)

    def release(self, sid: int, increment: int | None = None):
        """Stops holding a stream's window and gives back what it received (or `increment`)."""
        self.hold.discard(sid)
        s = self.stream(sid)
        inc = increment if increment is not None else s.unacked
        s.unacked = 0
        if inc:
            self.try_send(window_update_frame(sid, inc))

    def _initial_send(self) -> int:
        return self.peer_settings.get(S_INITIAL_WINDOW_SIZE, 65535)

    # -- outgoing requests

    def new_sid(self) -> int:
        sid = self.next_sid
        self.next_sid += 2
        return sid

    def encode(self, headers) -> bytes:
        """A header block with this connection's (stateful) HPACK encoder; names kept as given."""
        return self.encoder.encode([(k.encode("latin-1") if isinstance(k, str) else k,
                                     v.encode("latin-1") if isinstance(v, str) else v) for k, v in headers])

    def headers_frames(self, sid: int, block: bytes, end_stream: bool, max_frame: int = 16384) -> bytes:
        first, rest = block[:max_frame], block[max_frame:]
        flags = (END_STREAM if end_stream else 0) | (0 if rest else END_HEADERS)
        out = frame(HEADERS, flags, sid, first)
        while rest:
            chunk, rest = rest[:max_frame], rest[max_frame:]
            out += frame(CONTINUATION, 0 if rest else END_HEADERS, sid, chunk)
        return out

    def send_headers(self, headers, end_stream: bool = True, sid: int | None = None) -> int:
        """HEADERS (and CONTINUATION) with exactly these fields, in this order, unvalidated."""
        sid = sid or self.new_sid()
        self.stream(sid)
        self.stream_send_window.setdefault(sid, self._initial_send())
        self.send(self.headers_frames(sid, self.encode(headers), end_stream,
                                      self.peer_settings.get(S_MAX_FRAME_SIZE, 16384)))
        return sid

    def request(self, path: str = "/", method: str = "GET", headers=(), body: bytes | None = None,
                authority: str | None = None, end_stream: bool | None = None) -> int:
        hs = request_headers(path, method, authority or self.authority, self.scheme, headers)
        if body is not None and not any(k.lower() == "content-length" for k, _ in headers):
            hs.append(("content-length", str(len(body))))
        end = (body is None) if end_stream is None else end_stream
        sid = self.send_headers(hs, end_stream=end and body is None)
        if body is not None:
            self.send_data(sid, body, end_stream=end)
        return sid

    def send_data(self, sid: int, data: bytes, end_stream: bool = True, timeout: float = 30.0):
        """DATA within the peer's flow-control windows (waits for WINDOW_UPDATE as needed)."""
        deadline = time.monotonic() + timeout
        max_frame = self.peer_settings.get(S_MAX_FRAME_SIZE, 16384)
        view = memoryview(data)
        while True:
            win = min(self.conn_send_window, self.stream_send_window.setdefault(sid, self._initial_send()))
            n = min(len(view), max(win, 0), max_frame)
            if n > 0 or not view:
                last = n == len(view)
                self.send(frame(DATA, END_STREAM if (last and end_stream) else 0, sid, bytes(view[:n])))
                self.conn_send_window -= n
                self.stream_send_window[sid] -= n
                view = view[n:]
                if last:
                    return
                continue
            if time.monotonic() > deadline or self.closed or self.stream(sid).done:
                raise AssertionError(f"stream {sid}: no send window within {timeout}s "
                                     f"({len(view)} bytes left, conn {self.conn_send_window})")
            self.pump(0.2)

    def response(self, sid: int, timeout: float = IO) -> H2Stream:
        """Waits for the stream to end (or be reset); raises if it does not within timeout."""
        s = self.stream(sid)
        if not self.run_until(lambda: s.done, timeout):
            raise AssertionError(f"stream {sid} did not complete within {timeout}s: {s!r}, "
                                 f"goaway={self.goaway}, closed={self.closed} ({self.close_reason})")
        return s

    def get(self, path: str = "/", timeout: float = IO, **kw) -> H2Stream:
        return self.response(self.request(path, **kw), timeout)

    def describe(self) -> str:
        ga = (f"GOAWAY(last={self.goaway[0]}, {err_name(self.goaway[1])}, {self.goaway[2][:80]!r})"
              if self.goaway else "no GOAWAY")
        return (f"{ga}, closed={self.closed} ({self.close_reason}), frames in {self.frames_in}, "
                f"{self.bytes_out} bytes out")


# ----------------------------------------------------------------------------------------------
# Floods


class FloodResult:
    def __init__(self):
        self.frames = 0           # frames handed to the kernel
        self.bytes = 0
        self.outcome = "budget"   # goaway | closed | stalled | budget | time
        self.seconds = 0.0
        self.goaway = None

    @property
    def cut(self) -> bool:
        return self.outcome in ("goaway", "closed")

    def __repr__(self):
        ga = f", GOAWAY {err_name(self.goaway[1])} last={self.goaway[0]}" if self.goaway else ""
        return f"<flood {self.outcome} after {self.frames} frames / {self.bytes} bytes in {self.seconds:.1f}s{ga}>"


def flood(conn: H2Conn, batch: bytes, frames_per_batch: int, max_frames: int, *, read: bool = True,
          time_budget: float = 60.0, send_timeout: float = 5.0, settle: float = 5.0) -> FloodResult:
    """Sends batch again and again until weir sends GOAWAY or closes, weir stops reading (a send
    blocks send_timeout), max_frames were sent or time_budget passes. read: handle what weir
    sends between batches (else never read, like a client that wants weir to queue). Afterwards
    waits up to `settle` seconds for a GOAWAY/close that is already on its way."""
    res = FloodResult()
    t0 = time.monotonic()
    while True:
        if read:
            conn.drain()
        if conn.goaway is not None or conn.closed:
            break
        if res.frames >= max_frames:
            break
        if time.monotonic() - t0 > time_budget:
            res.outcome = "time"
            break
        r = conn.try_send(batch, send_timeout)
        if r == "closed":
            break
        if r == "timeout":
            res.outcome = "stalled"
            break
        res.frames += frames_per_batch
        res.bytes += len(batch)
    if not conn.closed and conn.goaway is None:
        if read or res.outcome == "stalled":
            conn.run_until(lambda: conn.closed or conn.goaway is not None, settle)
        else:
            # Never read: a close shows as a failing send (the peer's RST) or as EOF.
            deadline = time.monotonic() + settle
            while time.monotonic() < deadline and not conn.closed:
                if conn.try_send(ping_frame(), 1.0) == "closed":
                    break
                time.sleep(0.1)  # polling for the close of a connection it never reads
    if conn.goaway is None and not conn.closed:
        conn.drain(0.2)
    res.goaway = conn.goaway
    if conn.goaway is not None:
        res.outcome = "goaway"
    elif conn.closed:
        res.outcome = "closed"
    res.seconds = time.monotonic() - t0
    return res


# ----------------------------------------------------------------------------------------------
# Attacks (each on a fresh H2Conn; each returns a FloodResult, never runs unbounded)


def attack_rapid_reset(conn: H2Conn, path: str = "/", max_streams: int = 10000, batch: int = 100,
                       sync_timeout: float = 10.0, time_budget: float = 60.0) -> FloodResult:
    """CVE-2023-44487: HEADERS (END_STREAM) then RST_STREAM(CANCEL) at once, `batch` streams per
    write, a PING round trip after each write (so .frames counts streams weir has handled when
    it cuts), until GOAWAY/close, max_streams or time_budget."""
    res = FloodResult()
    t0 = time.monotonic()
    conn.wait_settings()
    block = static_block(request_headers(path, authority=conn.authority, scheme=conn.scheme))
    sid = conn.next_sid
    while res.frames < max_streams and not conn.closed and conn.goaway is None:
        if time.monotonic() - t0 > time_budget:
            res.outcome = "time"
            break
        data = b"".join(frame(HEADERS, END_STREAM | END_HEADERS, s, block) + rst_frame(s, CANCEL)
                        for s in range(sid, sid + 2 * batch, 2))
        if conn.try_send(data):
            break
        sid += 2 * batch
        res.frames += batch
        res.bytes += len(data)
        if not conn.sync(sync_timeout):
            if not conn.closed and conn.goaway is None:
                res.outcome = "stalled"  # no PING ACK within sync_timeout
            break
    conn.next_sid = sid
    if not conn.closed and conn.goaway is None and res.outcome == "budget":
        conn.run_until(lambda: conn.closed or conn.goaway is not None, 2.0)
    res.goaway = conn.goaway
    res.outcome = "goaway" if conn.goaway else ("closed" if conn.closed else res.outcome)
    res.seconds = time.monotonic() - t0
    return res


def attack_continuation_flood(conn: H2Conn, max_bytes: int = 10_000_000, value_size: int = 1000) -> FloodResult:
    """CVE-2024-27316: HEADERS without END_HEADERS, then CONTINUATION frames carrying header
    fields, never END_HEADERS, until GOAWAY/close or max_bytes."""
    conn.wait_settings()
    sid = conn.new_sid()
    conn.send(frame(HEADERS, END_STREAM, sid,
                    static_block(request_headers("/", authority=conn.authority, scheme=conn.scheme))))
    one = frame(CONTINUATION, 0, sid, hpack_literal("x-flood", "c" * value_size))
    per = 16
    return flood(conn, one * per, per, max_bytes // len(one), read=True)


def attack_settings_flood(conn: H2Conn, max_frames: int = 1_000_000) -> FloodResult:
    """SETTINGS frames (each needs an ACK) sent by a client that never reads."""
    one = settings_frame({S_HEADER_TABLE_SIZE: 4096})
    return flood(conn, one * 200, 200, max_frames, read=False)


def attack_ping_flood(conn: H2Conn, max_frames: int = 1_000_000) -> FloodResult:
    """PING frames (each needs an ACK) sent by a client that never reads."""
    return flood(conn, ping_frame(b"weirping") * 200, 200, max_frames, read=False)


def attack_empty_data_flood(conn: H2Conn, max_frames: int = 1_000_000) -> FloodResult:
    """CVE-2019-9518: a request body of endless zero-length DATA frames without END_STREAM."""
    conn.wait_settings()
    sid = conn.new_sid()
    conn.send(frame(HEADERS, END_HEADERS, sid, static_block(
        request_headers("/upload", "POST", authority=conn.authority, scheme=conn.scheme))))
    return flood(conn, frame(DATA, 0, sid, b"") * 200, 200, max_frames, read=True)


def attack_window_update_flood(conn: H2Conn, max_frames: int = 1_000_000) -> FloodResult:
    """WINDOW_UPDATE(increment 1) on the connection, over and over."""
    conn.wait_settings()
    return flood(conn, window_update_frame(0, 1) * 200, 200, max_frames, read=True)


def attack_priority_flood(conn: H2Conn, max_frames: int = 1_000_000) -> FloodResult:
    """CVE-2019-9513: PRIORITY frames reshuffling a dependency chain of 1,000 idle streams."""
    conn.wait_settings()
    batch = b"".join(priority_frame(2 * k + 1, 2 * k - 1 if k > 1 else 0, 1 + k % 256, exclusive=k % 2 == 0)
                     for k in range(1, 1001))
    return flood(conn, batch, 1000, max_frames, read=True)


def hpack_bomb_block(conn: H2Conn, path: str = "/", value_size: int = 4000, refs: int = 10000) -> bytes:
    """A header block that puts one ~4 KiB field into the dynamic table, then references it refs
    times (a few bytes on the wire, refs * 4 KiB once decoded)."""
    return (static_block(request_headers(path, authority=conn.authority, scheme=conn.scheme)) +
            hpack_literal("x-bomb", "b" * value_size, indexing=True) + hpack_indexed(62) * refs)


# ----------------------------------------------------------------------------------------------
# A well-behaved client that keeps requesting while something else goes on


class NormalTraffic:
    """A thread running `curl URL ARGS` again and again (each a new connection), recording code,
    HTTP version and curl's own time_total (measured by curl, so unaffected by this process's
    GIL). stop() joins and returns the results."""

    def __init__(self, url: str, *args: str, resolve=None, cacert=None, pause: float = 0.05,
                 max_time: float = 10.0):
        self.url, self.args, self.resolve, self.cacert = url, args, resolve, cacert
        self.pause, self.max_time = pause, max_time
        self.results: list[Curl] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        n = 0
        while not self._stop.is_set():
            try:
                sep = "&" if "?" in self.url else "?"
                r = curl(f"{self.url}{sep}normal={n}", *self.args, resolve=self.resolve, cacert=self.cacert,
                         timeout=self.max_time, in_thread=True)
                self.results.append(r)
            except Exception as e:  # noqa: BLE001
                self.errors.append(repr(e))
            n += 1
            self._stop.wait(self.pause)

    def start(self):
        self._thread.start()
        return self

    def wait_count(self, n: int, timeout: float = 30.0):
        wait_until(lambda: len(self.results) + len(self.errors) >= n, timeout, 0.05, f"{n} normal requests")

    def stop(self) -> list[Curl]:
        self._stop.set()
        self._thread.join(self.max_time + 20)
        return self.results

    def check(self, tc, min_count: int = 3, bound: float = NORMAL_BOUND, what: str = "during the attack"):
        """Every normal request succeeded (200) within bound seconds; at least min_count ran."""
        results = self.stop()
        tc.assertEqual(self.errors, [], f"normal client errors {what}")
        bad = [r for r in results if r.code != 200 or r.rc != 0]
        if bad:
            tc.fail(f"{len(bad)}/{len(results)} normal requests failed {what}; the first:\n{bad[0].describe()}")
        slow = [r for r in results if r.time_total >= bound]
        tc.assertEqual([repr(r) for r in slow], [], f"normal requests slower than {bound}s {what}")
        tc.assertGreaterEqual(len(results), min_count, f"too few normal requests ran {what}")
        return results


# ----------------------------------------------------------------------------------------------
# Memory


def h2_conn_blocks(streams: int = 100, uploading: int | None = None, stream_window: int = 256 * 1024,
                   conn_window: int = MB, block: int = 16384) -> int:
    """The designed most buffer blocks one HTTP/2 client connection makes weir hold
    (docs/ARCHITECTURE.md, "Memory ownership and limits"; defaults: 100 streams, 256 KiB stream
    and 1 MiB connection windows, 16 KiB blocks): the connection's two blocks; per open stream
    its server connection's in block (the response is pulled from there as the client's window
    allows: one block, however big the body); per stream sending a request body (`uploading`,
    default all) the server connection's out block, and the body bytes the windows let in,
    queued in pooled blocks -- its stream window each, the connection window for all together.
    With every default: 2 + 100 + 100 + 64 = 266 blocks, the "≈ 100 × 32 KiB + 1 MiB" of the
    design."""
    uploading = streams if uploading is None else uploading
    body = min(uploading * -(-stream_window // block), -(-conn_window // block))
    return 2 + streams + uploading + body


class PeakRss:
    """Resets weir's RSS high-water mark (or remembers it when refused) and reports the growth.
    settled: a predicate to wait for first (weir done with what came before)."""

    def __init__(self, pid: int, settled=None):
        self.pid = pid
        if settled is not None:
            wait_until(settled, 10, what="weir to settle before the RSS baseline")
        self.base = rss(pid)
        if not reset_hwm(pid):
            degrade("/proc/PID/clear_refs refused: the RSS peak is measured from weir's start")
            self.base = max(self.base, hwm(pid))

    def growth(self) -> int:
        return hwm(self.pid) - self.base

    def check(self, tc, budget: int = RSS_BUDGET, what: str = ""):
        g = self.growth()
        print(f"\n{what}: weir RSS {self.base / MB:.1f} MiB before, high-water growth {g / MB:.1f} MiB")
        tc.assertLess(g, budget, f"weir's RSS grew by {g / MB:.1f} MiB {what}")


# ----------------------------------------------------------------------------------------------
# Configs and the test case base


def tls_block(certs: list[Cert], **extra) -> dict:
    tls = {"certificates": [{"cert": c.path, "key": c.key} for c in certs]}
    tls.update(extra)
    return tls


class TlsLb:
    """A running weir with a TLS listener (https_port) and a plain one (plain_port)."""

    def __init__(self, weir, cfg: dict, https_port: int, plain_port: int | None, admin_port: int):
        self.weir, self.cfg = weir, cfg
        self.https_port, self.plain_port, self.admin_port = https_port, plain_port, admin_port
        self.proc = weir.proc

    @property
    def pid(self):
        return self.weir.pid

    def resolve(self, *names: str) -> list[str]:
        return [f"{n}:{self.https_port}:{HOST}" for n in (names or ("a.test",))]

    def url(self, path: str = "/", host: str = "a.test") -> str:
        return f"https://{host}:{self.https_port}{path}"

    def plain_url(self, path: str = "/") -> str:
        return f"http://{HOST}:{self.plain_port}{path}"

    def metrics(self):
        return self.weir.metrics()

    def backends(self):
        return self.weir.backends()

    def requests(self, backend: str = "web") -> int:
        return sum(s["requests_total"] for b in self.backends()["backends"] if b["name"] == backend
                   for s in b["servers"])

    def reload(self, cfg=None, **kw):
        if cfg is not None:
            self.cfg = cfg
        return self.weir.reload(cfg, **kw)


class TlsTestCase(WeirTestCase):
    """WeirTestCase with a per-class set of certificates (self.certs) and start_tls_lb()."""

    certs: Certs

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        folder = tempfile.mkdtemp(prefix="weir-e2e-certs-")
        cls.addClassCleanup(shutil.rmtree, folder, True)
        cls.certs = Certs(folder)

    def tls_config(self, servers, *, https_port: int, plain_port: int | None, admin_port: int,
                   certs: list[Cert] | None = None, tls_extra: dict | None = None,
                   plain_extra: dict | None = None, h2c: bool | None = True, limits: dict | None = None,
                   backend_extra: dict | None = None, backends: list | None = None, workers=1,
                   https_extra: dict | None = None, routes: list | None = None) -> dict:
        if certs is None:
            certs = [self.certs.a, self.certs.b]
        target = {"routes": routes} if routes else {"backend": "web"}
        https = {"name": "https", "listen": f"{HOST}:{https_port}", "tls": tls_block(certs, **(tls_extra or {})),
                 **target}
        https.update(https_extra or {})
        listeners = [https]
        if plain_port is not None:
            plain = {"name": "plain", "listen": f"{HOST}:{plain_port}", **target}
            if h2c is not None:
                plain["h2c"] = h2c
            plain.update(plain_extra or {})
            listeners.append(plain)
        if backends is None:
            svs = [({"address": f"{HOST}:{s}"} if isinstance(s, int) else dict(s)) for s in servers]
            b = {"name": "web"}
            b.update(backend_extra or {})
            b["servers"] = svs
            backends = [b]
        cfg = {"workers": workers, "admin": {"listen": f"{HOST}:{admin_port}"}, "listeners": listeners,
               "backends": backends}
        if limits:
            cfg["limits"] = dict(limits)
        return cfg

    def start_tls_lb(self, servers=None, *, plain: bool = True, https_port: int | None = None,
                     plain_port: int | None = None, **kw) -> TlsLb:
        """weir with an https listener (certs a.test + b.test unless `certs`), a plain one (h2c on
        unless h2c=False/None; not at all with plain=False) and admin, on fresh ports, in front of
        `servers` (default: a new whoami "web")."""
        if servers is None:
            servers = [{"address": self.start_whoami("web").address, "name": "web-1"}]
        taken = {p for p in (https_port, plain_port) if p}

        def fresh():  # free_port() can hand out the same port twice in a row
            while True:
                p = free_port()
                if p not in taken:
                    taken.add(p)
                    return p

        https_port = https_port or fresh()
        admin_port = fresh()
        plain_port = (plain_port or fresh()) if plain else None
        cfg = self.tls_config(servers, https_port=https_port, plain_port=plain_port, admin_port=admin_port, **kw)
        # One config file per weir: a SIGHUP re-reads its own file, not a later test weir's.
        w = self.start_weir(cfg, port=https_port, admin_port=admin_port, filename=f"weir-{https_port}.yaml")
        if plain_port is not None:
            wait_port(plain_port, w.proc)
        return TlsLb(w, cfg, https_port, plain_port, admin_port)

    # -- assertions

    def assertServes(self, lb_port: int, sni, cert: Cert, **kw):
        der = served_cert(lb_port, sni, **kw)
        self.assertEqual(der, cert.der, f"SNI {sni!r}: expected {cert!r}, weir served {der_summary(der)}")

    def assertCut(self, res: FloodResult, conn: H2Conn, what: str):
        self.assertTrue(res.cut, f"{what}: weir neither sent GOAWAY nor closed the connection: {res!r}; "
                                 f"{conn.describe()}")


def weir_alive(tc, lb: TlsLb):
    tc.assertTrue(lb.proc.alive(), f"weir exited with {lb.proc.returncode()}:\n{lb.proc.stderr()[-3000:]}")
    tc.assertNotIn("Sanitizer", lb.proc.stderr())

