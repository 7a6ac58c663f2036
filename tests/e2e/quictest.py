"""quictest: helpers for the HTTP/3 (QUIC) end-to-end tests, on top of weirtest and tlstest.

- gtls(): runs Debian's `gtlsclient` (ngtcp2-client, an HTTP/3 client) with a timeout and parses
  what it prints: per stream the :status, the response header fields and the body (from its hex
  dumps, or from the files of --download for big bodies), the stream's close code, and whether
  the handshake completed. gtlsclient exits 0 even when the handshake times out, so the result
  is judged by what it printed, never by its exit status alone. Its debug output (several lines
  per packet) is filtered through grep as it is written, so a 100 MiB transfer keeps a few KiB.
- Raw QUIC packets: varints; a QUIC v1 Initial with junk payload (what a flood would send, no
  encryption needed for a Retry decision) or a real one: AES-128-GCM protected, header
  protection applied, with a TLS 1.3 ClientHello (ALPN h3, x25519, QUIC transport parameters) in
  a CRYPTO frame, so that a server starts a real handshake for it; parsers for what comes back
  (Version Negotiation, Retry with its integrity tag checked, Initial decrypted with the server's
  keys to find the ServerHello, short-header packets). RFC 9000 / 9001.
- UdpProbe: sends datagrams from a socket bound to any 127/8 address and collects the answers.
- Network namespaces (root only): NetNs creates one with lo up and always removes it;
  in_netns() runs a block of the main thread inside one (sockets made there stay there).
- An impairment relay (`python3 quictest.py relay ...`): a UDP relay that loses, delays and
  reorders datagrams both ways, for when the kernel has no netem qdisc.

Stdlib plus python3-cryptography (Debian's, for AES-GCM/HKDF/X25519); Debian's /usr/bin/python3.
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

from tlstest import TlsLb, TlsTestCase
from weirtest import HOST, _pdeathsig, check_sanitizers, free_port, require, wait_port

GTLSCLIENT = shutil.which("gtlsclient") or "/usr/bin/gtlsclient"
GTLSSERVER = shutil.which("gtlsserver") or "/usr/sbin/gtlsserver"
IP = shutil.which("ip") or "/usr/sbin/ip"
TC = shutil.which("tc") or "/usr/sbin/tc"
PYTHON = "/usr/bin/python3"

QUIC_V1 = 0x00000001
MIN_INITIAL = 1200  # RFC 9000 14.1: a client's Initial datagram is at least this long


def have_gtlsclient() -> bool:
    return os.access(GTLSCLIENT, os.X_OK)


# ----------------------------------------------------------------------------------------------
# gtlsclient

# Lines of gtlsclient's debug output that say nothing about HTTP: dropped as they are written.
_NOISE = (r"^(?:I[0-9]{8} (?!.*(?:type=Retry|type=VN|CONNECTION_CLOSE|RESET_STREAM|STOP_SENDING|remote transport_parameters))"
          r"|Sent packet|Received packet|Set timer|Timer has|Updating traffic key|Ordered )")
_HEX_LINE = re.compile(r"^[0-9a-f]{8}  ")
_OFFSET_ONLY = re.compile(r"^([0-9a-f]{8})$")


class H3Stream:
    """One request stream as gtlsclient reported it."""

    def __init__(self, sid: int):
        self.id = sid
        self.request: list[tuple[str, str]] = []
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []  # response fields, pseudo-headers excluded
        self.chunks: list[bytes] = []
        self.body_len = 0  # from "body N bytes" lines (also with --no-http-dump)
        self.file: str | None = None  # the --download file, where there is one
        self.close_code: int | None = None  # "HTTP stream N closed with error code C"
        self.headers_ended = False

    @property
    def body(self) -> bytes:
        if self.file is not None:
            with open(self.file, "rb") as f:
                return f.read()
        return b"".join(self.chunks)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k == n:
                return v
        return default

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]

    def whoami_name(self):
        first = self.text.split("\n", 1)[0]
        return first[6:] if first.startswith("Name: ") else None

    def whoami_field(self, key: str):
        """A `Key: value` line of a whoami answer (read from the first 64 KiB of the body)."""
        if self.file is not None:
            with open(self.file, "rb") as f:
                text = f.read(65536).decode("utf-8", "replace")
        else:
            text = self.text
        for line in text.split("\n"):
            if line.startswith(key + ": "):
                return line[len(key) + 2:]
        return None

    @property
    def ok(self) -> bool:
        """A complete answer: a status and the stream closed with H3_NO_ERROR (0x100)."""
        return self.status is not None and self.close_code == 0x100

    def __repr__(self):
        size = os.path.getsize(self.file) if self.file and os.path.exists(self.file) else self.body_len
        return (f"<h3 stream {self.id} :status {self.status} {size}B close=" +
                (f"0x{self.close_code:x}" if self.close_code is not None else "none") + ">")


class H3Result:
    """What one gtlsclient run did."""

    def __init__(self, cmd: list[str], rc, elapsed: float, lines: list[str], timed_out: bool):
        self.cmd, self.rc, self.elapsed, self.lines, self.timed_out = cmd, rc, elapsed, lines, timed_out
        self.streams: dict[int, H3Stream] = {}
        self.handshake = any(ln.startswith("QUIC handshake has completed") for ln in lines)
        m = next((ln for ln in lines if ln.startswith("Negotiated ALPN is ")), None)
        self.alpn = m.split()[-1] if m else None
        # Packets of the server's that the client logged: a Retry it followed, a Version
        # Negotiation, the frames that close or reset.
        self.retries = sum(1 for ln in lines if " pkt rx " in ln and "type=Retry" in ln)
        self.closes = [ln for ln in lines if "CONNECTION_CLOSE" in ln]
        self.resets = [ln for ln in lines if "RESET_STREAM" in ln or "STOP_SENDING" in ln]
        self.errors = [ln for ln in lines if re.search(r"(?i)\berr(or)?_|error:|ERR_|failed|timeout", ln)
                       and not ln.startswith("HTTP stream")]
        self._parse()

    def _stream(self, sid: int) -> H3Stream:
        if sid not in self.streams:
            self.streams[sid] = H3Stream(sid)
        return self.streams[sid]

    def _parse(self):
        cur_req: H3Stream | None = None
        body_to: H3Stream | None = None
        data = bytearray()
        prev_line_bytes = b""
        star = False
        for ln in self.lines:
            if body_to is not None:
                if _HEX_LINE.match(ln):
                    off = int(ln[:8], 16)
                    if star:  # hexdump -C style: "*" stood for repeats of the previous line
                        while len(data) < off:
                            data += prev_line_bytes
                        del data[off:]
                        star = False
                    prev_line_bytes = bytes.fromhex("".join(ln[10:59].split()))
                    data += prev_line_bytes
                    continue
                if ln == "*":
                    star = True
                    continue
                m = _OFFSET_ONLY.match(ln)
                if m:
                    end = int(m.group(1), 16)
                    if star:
                        while len(data) < end:
                            data += prev_line_bytes
                        star = False
                    del data[end:]
                    body_to.chunks.append(bytes(data))
                    body_to, data, prev_line_bytes = None, bytearray(), b""
                    continue
                body_to.chunks.append(bytes(data))  # a dump cut short
                body_to, data, prev_line_bytes, star = None, bytearray(), b"", False
            m = re.match(r"^http: stream 0x([0-9a-f]+) submit request headers", ln)
            if m:
                cur_req = self._stream(int(m.group(1), 16))
                continue
            if cur_req is not None:
                m = re.match(r"^\[(:?[^:]+): (.*)\]$", ln)
                if m:
                    cur_req.request.append((m.group(1), m.group(2)))
                    continue
                cur_req = None
            m = re.match(r"^http: stream 0x([0-9a-f]+) \[(:?[^:]+): (.*)\]$", ln)
            if m:
                s = self._stream(int(m.group(1), 16))
                name, value = m.group(2), m.group(3)
                if name == ":status":
                    s.status = int(value)  # a final status follows any 1xx
                else:
                    s.headers.append((name, value))
                continue
            m = re.match(r"^http: stream 0x([0-9a-f]+) headers ended", ln)
            if m:
                self._stream(int(m.group(1), 16)).headers_ended = True
                continue
            m = re.match(r"^http: stream 0x([0-9a-f]+) body (\d+) bytes", ln)
            if m:
                s = self._stream(int(m.group(1), 16))
                s.body_len += int(m.group(2))
                body_to = s
                continue
            m = re.match(r"^HTTP stream (\d+) closed with error code (\d+)", ln)
            if m:
                self._stream(int(m.group(1))).close_code = int(m.group(2))
                continue
        if body_to is not None and data:
            body_to.chunks.append(bytes(data))

    @property
    def ordered(self) -> list[H3Stream]:
        return [self.streams[k] for k in sorted(self.streams)]

    @property
    def statuses(self) -> list[int | None]:
        return [s.status for s in self.ordered]

    @property
    def first(self) -> H3Stream:
        if not self.streams:
            raise AssertionError(f"gtlsclient reported no stream:\n{self.describe()}")
        return self.ordered[0]

    def all_ok(self, n: int | None = None) -> bool:
        ss = self.ordered
        return bool(ss) and all(s.ok for s in ss) and (n is None or len(ss) == n)

    def __repr__(self):
        return (f"<gtlsclient rc={self.rc} {self.elapsed:.2f}s handshake={self.handshake} alpn={self.alpn} "
                f"retries={self.retries} "
                f"streams={self.ordered}{' TIMED OUT' if self.timed_out else ''}>")

    def describe(self, tail: int = 60) -> str:
        interesting = [ln for ln in self.lines if not _HEX_LINE.match(ln) and ln not in ("*",)
                       and not _OFFSET_ONLY.match(ln)]
        return (f"{self!r}\n$ {' '.join(self.cmd)}\n--- gtlsclient output (filtered, last {tail} lines) ---\n" +
                "\n".join(interesting[-tail:]))


def gtls(port: int, *paths: str, authority: str | None = None, sni: str | None = "a.test",
         addr: str = HOST, data: str | None = None, method: str | None = None, download: str | None = None,
         nstreams: int | None = None, timeout: float = 60.0, idle_timeout: str = "15s",
         extra: list[str] | tuple = (), netns: str | None = None, in_thread: bool = False,
         exit_on_close: bool = True) -> H3Result:
    """gtlsclient to addr:port requesting each path (https://AUTHORITY PATH; authority defaults
    to SNI:PORT), exiting when all streams are closed. data: a file uploaded as every request's
    body (-d; method defaults to POST then). download: a directory: bodies go to files there
    (--no-http-dump) instead of through the hex dump (use it for big bodies). timeout: the
    whole run (killed after it; .timed_out). netns: run it inside that network namespace.
    exit_on_close False: the client stays after its streams end, until the connection closes
    (idle timeout: the smaller of idle_timeout and the server's)."""
    if authority is None:
        authority = f"{sni or addr}:{port}"
    uris = [f"https://{authority}{p}" for p in paths]
    cmd = [GTLSCLIENT, "--no-quic-dump", f"--timeout={idle_timeout}", "--handshake-timeout=10s"]
    if exit_on_close:
        cmd.append("--exit-on-all-streams-close")
    if sni:
        cmd.append(f"--sni={sni}")
    if data is not None:
        cmd += ["-d", data, "-m", method or "POST"]
    elif method:
        cmd += ["-m", method]
    if download is not None:
        os.makedirs(download, exist_ok=True)
        cmd += ["--no-http-dump", f"--download={download}"]
    if nstreams is not None:
        cmd += ["-n", str(nstreams)]
    cmd += list(extra) + [addr, str(port)] + uris
    if netns is not None:
        cmd = [IP, "netns", "exec", netns] + cmd
    fd, out_path = tempfile.mkstemp(prefix="weir-gtls-")
    t0 = time.monotonic()
    timed_out = False
    try:
        with os.fdopen(fd, "wb") as out:
            pre = None if in_thread else _pdeathsig
            client = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, preexec_fn=pre)
            grep = subprocess.Popen(["grep", "-a", "-v", "-P", _NOISE], stdin=client.stderr,
                                    stdout=out, stderr=subprocess.DEVNULL, preexec_fn=pre)
            client.stderr.close()
            try:
                rc = client.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                client.kill()
                rc = client.wait(10)
            try:
                grep.wait(timeout=30)
            except subprocess.TimeoutExpired:
                grep.kill()
                grep.wait(5)
        elapsed = time.monotonic() - t0
        with open(out_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    finally:
        os.unlink(out_path)
    check_sanitizers(text, "gtlsclient")
    res = H3Result(cmd, rc, elapsed, text.splitlines(), timed_out)
    if download is not None:
        names = {}
        for s in res.ordered:
            path = next((v for k, v in s.request if k == ":path"), None)
            if path is None:
                continue
            name = path.rsplit("/", 1)[-1] or "index.html"
            names.setdefault(name, []).append(s)
        for name, ss in names.items():
            f = os.path.join(download, name)
            if len(ss) == 1 and os.path.exists(f):
                ss[0].file = f
    return res


# ----------------------------------------------------------------------------------------------
# The test case base


class Http3Case(TlsTestCase):
    """TlsTestCase plus start_h3_lb(): an https listener with http3 on, a plain one, admin."""

    def setUp(self):
        super().setUp()
        require(have_gtlsclient(), f"{GTLSCLIENT} not installed: apt-get install ngtcp2-client", self)
        require(have_crypto(), "python3-cryptography not installed: apt-get install python3-cryptography", self)

    def start_h3_lb(self, servers=None, *, top_extra: dict | None = None, https_extra: dict | None = None,
                    http3: bool = True, plain: bool = True, **kw) -> TlsLb:
        if servers is None and "backends" not in kw:
            servers = [{"address": self.start_whoami("web").address, "name": "web-1"}]
        taken: set[int] = set()

        def fresh():
            while True:
                p = free_port()
                if p not in taken:
                    taken.add(p)
                    return p

        https_port, admin_port = fresh(), fresh()
        plain_port = fresh() if plain else None
        extra = dict(https_extra or {})
        if http3:
            extra["http3"] = True
        cfg = self.tls_config(servers or [], https_port=https_port, plain_port=plain_port, admin_port=admin_port,
                              https_extra=extra, **kw)
        cfg.update(top_extra or {})
        w = self.start_weir(cfg, port=https_port, admin_port=admin_port, filename=f"weir-{https_port}.yaml")
        if plain_port is not None:
            wait_port(plain_port, w.proc)
        return TlsLb(w, cfg, https_port, plain_port, admin_port)

    def h3(self, lb: TlsLb, *paths: str, **kw) -> H3Result:
        return gtls(lb.https_port, *paths, **kw)

    def assertH3Ok(self, r: H3Result, n: int | None = None, status: int = 200):
        self.assertFalse(r.timed_out, r.describe())
        self.assertTrue(r.handshake, f"no QUIC handshake:\n{r.describe()}")
        self.assertEqual(r.alpn, "h3", r.describe())
        if n is not None:
            self.assertEqual(len(r.streams), n, f"expected {n} streams:\n{r.describe()}")
        for s in r.ordered:
            self.assertEqual(s.status, status, f"stream {s.id}: {s!r}\n{r.describe()}")
            self.assertEqual(s.close_code, 0x100, f"stream {s.id} did not end with H3_NO_ERROR:\n{r.describe()}")

    def m(self, lb: TlsLb, name: str, **labels) -> float:
        return lb.metrics().get(name, **labels)


# ----------------------------------------------------------------------------------------------
# QUIC wire format (RFC 9000)


def varint(n: int) -> bytes:
    if n < 1 << 6:
        return bytes([n])
    if n < 1 << 14:
        return struct.pack(">H", n | 0x4000)
    if n < 1 << 30:
        return struct.pack(">I", n | 0x80000000)
    return struct.pack(">Q", n | 0xC000000000000000)


def varint2(n: int) -> bytes:
    """n as a two-byte varint (n < 16384): a Length field of known size."""
    return struct.pack(">H", n | 0x4000)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(buf):
        raise ValueError("varint past the end")
    size = 1 << (buf[pos] >> 6)
    if pos + size > len(buf):
        raise ValueError("varint past the end")
    v = buf[pos] & 0x3F
    for b in buf[pos + 1:pos + size]:
        v = (v << 8) | b
    return v, pos + size


def long_header(first: int, version: int, dcid: bytes, scid: bytes) -> bytes:
    return bytes([first]) + struct.pack(">I", version) + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid


def junk_initial(dcid: bytes | None = None, scid: bytes | None = None, *, token: bytes = b"", pn_len: int = 4,
                 size: int = MIN_INITIAL, version: int = QUIC_V1, rng: random.Random | None = None) -> bytes:
    """A QUIC Initial whose header is right and whose protected part is junk (not decryptable):
    first byte 0xc0 | (pn_len-1), version, DCID (8..20 random bytes unless given), SCID (8),
    token length (varint) and token, Length (varint), packet number, random payload, the
    datagram padded to `size` bytes."""
    rng = rng or random.Random()
    if dcid is None:
        dcid = rng.randbytes(rng.randint(8, 20))
    if scid is None:
        scid = rng.randbytes(8)
    head = long_header(0xC0 | (pn_len - 1), version, dcid, scid) + varint(len(token)) + token
    rest = size - len(head) - 2
    if rest < pn_len + 20:
        rest = pn_len + 20
    return head + varint2(rest) + rng.randbytes(rest)


def unknown_version_packet(version: int = 0x0BADBAD0, size: int = MIN_INITIAL,
                           dcid: bytes | None = None, scid: bytes | None = None) -> bytes:
    """A long-header packet of an unknown version, `size` bytes (a server answers >= 1200 with
    Version Negotiation)."""
    dcid = dcid if dcid is not None else os.urandom(12)
    scid = scid if scid is not None else os.urandom(8)
    head = long_header(0xC0, version, dcid, scid)
    return head + os.urandom(max(0, size - len(head)))


def short_packet(dcid_len: int = 16, size: int = 64) -> bytes:
    """A short-header (1-RTT) packet to a random DCID, random contents: `size` bytes."""
    return bytes([0x40 | (os.urandom(1)[0] & 0x3F)]) + os.urandom(dcid_len) + os.urandom(max(0, size - 1 - dcid_len))


class Parsed:
    """What a datagram from the server is: .kind in version_negotiation, retry, initial, 0rtt,
    handshake, short, garbage; the header's fields where it has them."""

    def __init__(self, data: bytes):
        self.data = data
        self.kind = "garbage"
        self.version = None
        self.dcid = self.scid = b""
        self.versions: list[int] = []
        self.token = b""
        self.tag = b""
        self.first = data[0] if data else None
        try:
            self._parse()
        except (ValueError, IndexError, struct.error):
            self.kind = "garbage"

    def _parse(self):
        d = self.data
        if not d:
            return
        if not d[0] & 0x80:
            self.kind = "short"
            return
        self.version = struct.unpack(">I", d[1:5])[0]
        pos = 5
        n = d[pos]
        self.dcid = d[pos + 1:pos + 1 + n]
        pos += 1 + n
        n = d[pos]
        self.scid = d[pos + 1:pos + 1 + n]
        pos += 1 + n
        if pos > len(d):
            raise ValueError("truncated")
        if self.version == 0:
            self.kind = "version_negotiation"
            rest = d[pos:]
            self.versions = [struct.unpack(">I", rest[i:i + 4])[0] for i in range(0, len(rest) - 3, 4)]
            return
        ptype = (d[0] & 0x30) >> 4
        if self.version == QUIC_V1:
            self.kind = ["initial", "0rtt", "handshake", "retry"][ptype]
        else:
            self.kind = f"long-type{ptype}-v{self.version:#x}"
        if self.kind == "retry":
            self.token = d[pos:-16]
            self.tag = d[-16:]

    def __repr__(self):
        extra = ""
        if self.kind == "version_negotiation":
            extra = " versions=" + ",".join(f"{v:#010x}" for v in self.versions)
        if self.kind == "retry":
            extra = f" token={len(self.token)}B"
        return (f"<{self.kind} {len(self.data)}B first={self.first:#04x} dcid={self.dcid.hex()} "
                f"scid={self.scid.hex()}{extra}>") if self.data else "<empty>"


# ----------------------------------------------------------------------------------------------
# QUIC v1 packet protection (RFC 9001), for real Initials and for checking Retry packets

INITIAL_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
RETRY_KEY_V1 = bytes.fromhex("be0c690b9f66575a1d766b54e368c84e")
RETRY_NONCE_V1 = bytes.fromhex("461599d35d632bf2239825bb")


def have_crypto() -> bool:
    try:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: F401
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: F401
        return True
    except ImportError:
        return False


def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes, hmac
    h = hmac.HMAC(salt, hashes.SHA256())
    h.update(ikm)
    return h.finalize()


def _hkdf_expand_label(secret: bytes, label: str, length: int, context: bytes = b"") -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
    full = b"tls13 " + label.encode()
    info = struct.pack(">H", length) + bytes([len(full)]) + full + bytes([len(context)]) + context
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


class InitialKeys:
    """The Initial keys of one side (client or server) for a client's first DCID."""

    def __init__(self, dcid: bytes, server: bool):
        initial = _hkdf_extract(INITIAL_SALT_V1, dcid)
        secret = _hkdf_expand_label(initial, "server in" if server else "client in", 32)
        self.key = _hkdf_expand_label(secret, "quic key", 16)
        self.iv = _hkdf_expand_label(secret, "quic iv", 12)
        self.hp = _hkdf_expand_label(secret, "quic hp", 16)

    def mask(self, sample: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        enc = Cipher(algorithms.AES(self.hp), modes.ECB()).encryptor()
        return enc.update(sample) + enc.finalize()

    def nonce(self, pn: int) -> bytes:
        return bytes(a ^ b for a, b in zip(self.iv, pn.to_bytes(12, "big")))


def retry_tag_ok(retry: bytes, odcid: bytes) -> bool:
    """RFC 9001 5.8: the Retry's integrity tag over (ODCID length, ODCID, the Retry without its
    tag), with the fixed v1 key: proves the server made it for the Initial with DCID odcid."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    pseudo = bytes([len(odcid)]) + odcid + retry[:-16]
    return AESGCM(RETRY_KEY_V1).encrypt(RETRY_NONCE_V1, b"", pseudo) == retry[-16:]


def _ext(etype: int, body: bytes) -> bytes:
    return struct.pack(">HH", etype, len(body)) + body


def client_hello(sni: str | None, scid: bytes, alpn: bytes = b"h3") -> bytes:
    """A TLS 1.3 ClientHello handshake message for QUIC: TLS_AES_128_GCM_SHA256 and friends,
    x25519 key share, ALPN, and the QUIC transport parameters (with initial_source_connection_id
    = scid, which a server checks)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    pub = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def tp(pid: int, value: bytes) -> bytes:
        return varint(pid) + varint(len(value)) + value

    params = (tp(0x01, varint(30000)) +            # max_idle_timeout (ms)
              tp(0x04, varint(1 << 20)) +          # initial_max_data
              tp(0x05, varint(1 << 18)) +          # initial_max_stream_data_bidi_local
              tp(0x06, varint(1 << 18)) +          # initial_max_stream_data_bidi_remote
              tp(0x07, varint(1 << 18)) +          # initial_max_stream_data_uni
              tp(0x08, varint(100)) +              # initial_max_streams_bidi
              tp(0x09, varint(100)) +              # initial_max_streams_uni
              tp(0x0F, scid))                       # initial_source_connection_id
    exts = b""
    if sni:
        name = sni.encode()
        entry = b"\x00" + struct.pack(">H", len(name)) + name
        exts += _ext(0, struct.pack(">H", len(entry)) + entry)
    exts += _ext(10, struct.pack(">H", 4) + b"\x00\x1d\x00\x17")  # supported_groups: x25519, P-256
    sigs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
    exts += _ext(13, struct.pack(">H", 2 * len(sigs)) + b"".join(struct.pack(">H", s) for s in sigs))
    proto = bytes([len(alpn)]) + alpn
    exts += _ext(16, struct.pack(">H", len(proto)) + proto)
    exts += _ext(43, b"\x02\x03\x04")  # supported_versions: TLS 1.3
    exts += _ext(45, b"\x01\x01")  # psk_key_exchange_modes: psk_dhe_ke
    share = b"\x00\x1d" + struct.pack(">H", 32) + pub
    exts += _ext(51, struct.pack(">H", len(share)) + share)
    exts += _ext(0x39, params)
    body = (b"\x03\x03" + os.urandom(32) + b"\x00" +
            struct.pack(">H", 6) + b"\x13\x01\x13\x02\x13\x03" + b"\x01\x00" +
            struct.pack(">H", len(exts)) + exts)
    return b"\x01" + len(body).to_bytes(3, "big") + body


def protected_initial(dcid: bytes, scid: bytes, payload: bytes, *, token: bytes = b"", pn: int = 0,
                      size: int = MIN_INITIAL) -> bytes:
    """A client Initial carrying `payload` (frames), padded with PADDING frames to a `size`-byte
    datagram, encrypted and header-protected with the client Initial keys of dcid."""
    keys = InitialKeys(dcid, server=False)
    pn_len = 4
    head = long_header(0xC0 | (pn_len - 1), QUIC_V1, dcid, scid) + varint(len(token)) + token
    overhead = len(head) + 2 + pn_len + 16
    if overhead + len(payload) < size:
        payload = payload + b"\x00" * (size - overhead - len(payload))
    length = pn_len + len(payload) + 16
    header = head + varint2(length) + pn.to_bytes(pn_len, "big")
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    sealed = AESGCM(keys.key).encrypt(keys.nonce(pn), payload, header)
    pn_offset = len(header) - pn_len
    sample = sealed[4 - pn_len:4 - pn_len + 16]
    mask = keys.mask(sample)
    out = bytearray(header + sealed)
    out[0] ^= mask[0] & 0x0F
    for i in range(pn_len):
        out[pn_offset + i] ^= mask[1 + i]
    return bytes(out)


def real_initial(sni: str | None = "a.test", dcid: bytes | None = None, scid: bytes | None = None,
                 token: bytes = b"", size: int = MIN_INITIAL) -> tuple[bytes, bytes, bytes]:
    """A real first Initial of a client (a ClientHello in a CRYPTO frame, padded to `size` bytes
    if it is shorter): (datagram, dcid, scid)."""
    dcid = dcid if dcid is not None else os.urandom(random.randint(8, 20))
    scid = scid if scid is not None else os.urandom(8)
    ch = client_hello(sni, scid)
    frame = b"\x06" + varint(0) + varint(len(ch)) + ch
    return protected_initial(dcid, scid, frame, token=token, size=size), dcid, scid


def decrypt_server_initial(datagram: bytes, odcid: bytes) -> bytes | None:
    """The frames of the first (Initial) packet of a server datagram, decrypted with the server
    Initial keys of the client's first DCID odcid; None if it is not one or does not decrypt."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    try:
        p = Parsed(datagram)
        if p.kind != "initial":
            return None
        pos = 6 + len(p.dcid) + 1 + len(p.scid)
        tlen, pos = read_varint(datagram, pos)
        pos += tlen
        length, pos = read_varint(datagram, pos)
        pn_offset = pos
        keys = InitialKeys(odcid, server=True)
        mask = keys.mask(datagram[pn_offset + 4:pn_offset + 20])
        first = datagram[0] ^ (mask[0] & 0x0F)
        pn_len = (first & 0x03) + 1
        pn_bytes = bytes(datagram[pn_offset + i] ^ mask[1 + i] for i in range(pn_len))
        pn = int.from_bytes(pn_bytes, "big")
        header = bytes([first]) + datagram[1:pn_offset] + pn_bytes
        sealed = datagram[pn_offset + pn_len:pn_offset + length]
        return AESGCM(keys.key).decrypt(keys.nonce(pn), sealed, header)
    except (InvalidTag, ValueError, IndexError):
        return None


def has_server_hello(frames: bytes | None) -> bool:
    """True if the decrypted Initial frames hold a CRYPTO frame starting a ServerHello."""
    if not frames:
        return False
    pos = 0
    try:
        while pos < len(frames):
            t = frames[pos]
            if t == 0x00 or t == 0x01:  # PADDING, PING
                pos += 1
            elif t in (0x02, 0x03):  # ACK
                pos += 1
                _, pos = read_varint(frames, pos)
                _, pos = read_varint(frames, pos)
                count, pos = read_varint(frames, pos)
                _, pos = read_varint(frames, pos)
                for _ in range(count):
                    _, pos = read_varint(frames, pos)
                    _, pos = read_varint(frames, pos)
                if t == 0x03:
                    for _ in range(3):
                        _, pos = read_varint(frames, pos)
            elif t == 0x06:
                pos += 1
                _, pos = read_varint(frames, pos)
                n, pos = read_varint(frames, pos)
                return frames[pos] == 0x02 and n > 4
            else:
                return False
    except (ValueError, IndexError):
        return False
    return False


# ----------------------------------------------------------------------------------------------
# Raw UDP


class UdpProbe:
    """A UDP socket bound to (source, 0): send() datagrams to a port, collect() what comes back."""

    def __init__(self, source: str = HOST, rcvbuf: int = 1 << 21):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        except OSError:
            pass
        self.sock.bind((source, 0))
        self.sock.setblocking(False)
        self.source = source
        self.received: list[bytes] = []

    def send(self, port: int, data: bytes, host: str = HOST):
        for _ in range(100):
            try:
                self.sock.sendto(data, (host, port))
                return
            except BlockingIOError:
                time.sleep(0.001)
        raise AssertionError("UDP send kept blocking")

    def drain(self) -> int:
        n = 0
        while True:
            try:
                d = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return n
            except ConnectionRefusedError:
                continue  # an ICMP port unreachable from an earlier send
            self.received.append(d)
            n += 1

    def collect(self, quiet: float = 0.3, limit: float = 3.0) -> list[bytes]:
        """Reads until nothing came for `quiet` seconds (or `limit` passed); returns all received."""
        deadline = time.monotonic() + limit
        last = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline or now - last >= quiet:
                return self.received
            r, _, _ = select.select([self.sock], [], [], min(quiet - (now - last), deadline - now))
            if r and self.drain():
                last = time.monotonic()

    def close(self):
        self.sock.close()


def collect_many(probes: list[UdpProbe], quiet: float = 0.5, limit: float = 10.0):
    """Drains every probe until none received anything for `quiet` seconds (or `limit` passed)."""
    deadline = time.monotonic() + limit
    last = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= deadline or now - last >= quiet:
            return
        r, _, _ = select.select([p.sock for p in probes], [], [], 0.05)
        if r:
            got = 0
            for p in probes:
                if p.sock in r:
                    got += p.drain()
            if got:
                last = time.monotonic()


# ----------------------------------------------------------------------------------------------
# Network namespaces

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def ip(*args: str, check: bool = True, timeout: float = 15.0) -> subprocess.CompletedProcess:
    p = subprocess.run([IP, *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


class NetNs:
    """A network namespace (name unique to this process and tag) with lo up. remove() (register
    it as a cleanup before spawning anything inside: cleanups run last-in first-out) kills what
    still runs inside and deletes it."""

    def __init__(self, tag: str):
        self.name = f"weirh3-{os.getpid()}-{tag}"
        r = ip("netns", "add", self.name, check=False)
        if r.returncode != 0:
            raise OSError(f"cannot create network namespace {self.name}: {r.stderr.strip()}")
        ip("-n", self.name, "link", "set", "lo", "up")

    def args(self, cmd: list[str]) -> list[str]:
        return [IP, "netns", "exec", self.name, *cmd]

    def run(self, cmd: list[str], timeout: float = 15.0) -> subprocess.CompletedProcess:
        return subprocess.run(self.args(cmd), capture_output=True, text=True, timeout=timeout,
                              preexec_fn=_pdeathsig)

    def remove(self):
        r = ip("netns", "pids", self.name, check=False)
        for p in r.stdout.split():
            try:
                os.kill(int(p), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        ip("netns", "del", self.name, check=False)
        if self.name in ip("netns", "list", check=False).stdout.split():
            raise AssertionError(f"network namespace {self.name} still there after deletion")


@contextlib.contextmanager
def in_netns(name: str):
    """Runs the block with this (main) thread in network namespace `name`: sockets made inside
    stay there. Processes must not be started inside (use NetNs.args)."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(there, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        yield
    finally:
        _libc.setns(here, CLONE_NEWNET)
        os.close(here)
        os.close(there)


# ----------------------------------------------------------------------------------------------
# A UDP impairment relay: `python3 quictest.py relay LISTEN_PORT TARGET_PORT LOSS DELAY_MS
# JITTER_MS REORDER SEED` (LOSS and REORDER are probabilities). Datagrams from the client (the
# first address that sends to LISTEN_PORT) go to 127.0.0.1:TARGET_PORT and the answers back, each
# way: lost with probability LOSS; else sent at once with probability REORDER (so that it
# overtakes the delayed ones, netem's `reorder`), else delayed by DELAY_MS +- JITTER_MS.
# Prints "relay ready" when listening; on SIGTERM prints its counters and exits 0.


def relay_main(argv: list[str]) -> int:
    listen_port, target_port = int(argv[0]), int(argv[1])
    loss, delay, jitter, reorder = float(argv[2]), float(argv[3]) / 1000, float(argv[4]) / 1000, float(argv[5])
    rng = random.Random(int(argv[6]))
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (front, back):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.setblocking(False)
    front.bind((HOST, listen_port))
    back.connect((HOST, target_port))
    client = None
    queue: list = []
    seq = 0
    stats = {"up": 0, "down": 0, "lost": 0, "reordered": 0, "delayed": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print("relay ready", flush=True)

    def out(sock, data, addr):
        try:
            if addr is None:
                sock.send(data)
            else:
                sock.sendto(data, addr)
        except OSError:
            pass

    while not stop:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, sock, data, addr = heapq.heappop(queue)
            out(sock, data, addr)
        wait = max(0.0, queue[0][0] - now) if queue else 0.2
        try:
            r, _, _ = select.select([front, back], [], [], wait)
        except InterruptedError:
            continue
        for s in r:
            for _ in range(64):
                try:
                    data, addr = s.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except ConnectionRefusedError:
                    continue
                if s is front:
                    client = addr
                    dest, daddr = back, None
                    stats["up"] += 1
                else:
                    if client is None:
                        continue
                    dest, daddr = front, client
                    stats["down"] += 1
                if rng.random() < loss:
                    stats["lost"] += 1
                    continue
                if rng.random() < reorder:
                    stats["reordered"] += 1
                    out(dest, data, daddr)
                    continue
                stats["delayed"] += 1
                seq += 1
                at = time.monotonic() + max(0.0, delay + rng.uniform(-jitter, jitter))
                heapq.heappush(queue, (at, seq, dest, data, daddr))
    print("relay " + " ".join(f"{k}={v}" for k, v in stats.items()), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "relay":
        sys.exit(relay_main(sys.argv[2:]))
    print(__doc__)
    sys.exit(2)
