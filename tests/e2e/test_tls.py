"""TLS termination: certificates picked by SNI (wildcard, ECDSA, default), protocol versions,
session resumption, what TLS changes in HTTP (X-Forwarded-Proto, HSTS, the HTTPS redirect,
Secure sticky cookies), `weir check` on certificates, certificate hot reload under load, and
re-encryption to TLS origins (verified, untrusted, wrong name, verify off)."""

import os
import re
import socket
import ssl
import threading
import time
import unittest

from tlstest import (HOST, TlsOrigin, TlsTestCase, client_context, curl, der_summary, https_conn, https_get,
                     replace_cert, s_client, served_cert, weir_alive)
from weirtest import HttpConn, free_port, http_get, wait_until

LOC = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): (?P<msg>.+)$")
HTTP_CLOSE = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"


class SniTest(TlsTestCase):
    def setUp(self):
        super().setUp()
        self.lb = self.start_tls_lb(plain=False)

    def test_certificate_picked_by_sni(self):
        c = self.certs
        cases = [("a.test", c.a), ("x.wild.test", c.a), ("b.test", c.b), ("B.Test", c.b),
                 ("unknown.test", c.a), ("deep.x.wild.test", c.a), (None, c.a)]
        for sni, cert in cases:
            with self.subTest(sni=sni):
                self.assertServes(self.lb.https_port, sni, cert)

    def test_curl_verifies_each_name(self):
        port = self.lb.https_port
        for name, cn in [("a.test", "a.test"), ("x.wild.test", "a.test"), ("b.test", "b.test")]:
            with self.subTest(name=name):
                r = curl(f"https://{name}:{port}/sni", "--http1.1", resolve=f"{name}:{port}:{HOST}",
                         cacert=self.certs.ca, verbose=True)
                self.assertEqual((r.rc, r.code), (0, 200), r.describe())
                self.assertEqual(r.whoami_name(), "web", r.text[:300])
                self.assertEqual(r.subject, f"CN={cn}", r.describe())
                self.assertIn(f"Host: {name}:{port}", r.text)

    def test_unknown_and_missing_sni_get_default(self):
        port = self.lb.https_port
        r = curl(f"https://unknown.test:{port}/", "-k", resolve=f"unknown.test:{port}:{HOST}", verbose=True)
        self.assertEqual((r.rc, r.code, r.subject), (0, 200, "CN=a.test"), r.describe())
        # An IP in the URL: curl sends no SNI.
        r = curl(f"https://{HOST}:{port}/", "-k", verbose=True)
        self.assertEqual((r.rc, r.code, r.subject), (0, 200, "CN=a.test"), r.describe())
        sc = s_client(port, "-tls1_3", servername=None, input=HTTP_CLOSE)
        self.assertTrue(sc.accepted, sc.tail())
        self.assertIn("CN = a.test", sc.subject or "", sc.tail())

    def test_ecdsa_certificate(self):
        port = self.lb.https_port
        for ver in ("-tls1_2", "-tls1_3"):
            with self.subTest(version=ver):
                sc = s_client(port, ver, servername="b.test", input=HTTP_CLOSE)
                self.assertTrue(sc.accepted, sc.tail())
                self.assertIn("CN = b.test", sc.subject or "", sc.tail())
                if ver == "-tls1_2":
                    self.assertIn("ECDSA", sc.cipher, sc)
                else:
                    self.assertRegex(sc.text, r"(?i)peer signature type: ecdsa", sc.tail())

    def test_http11_keepalive_over_tls(self):
        with https_conn(self.lb.https_port, "a.test", self.certs.ca) as c:
            self.assertEqual(c.cert_der, self.certs.a.der)
            for i in range(10):
                r = c.get(f"/ka/{i}", host="a.test")
                self.assertWhoami(r, "web")
                self.assertIn(f"GET /ka/{i} HTTP/1.1", r.text)
            # A large body through TLS records and partial writes.
            r = c.get("/big?size=10000000", host="a.test", discard_body=True)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body_length, int(r.header("Content-Length")))
            self.assertGreater(r.body_length, 10000000)
            self.assertWhoami(c.get("/after", host="a.test"), "web")

    def test_plain_http_to_tls_port_fails_cleanly(self):
        # Clear-text HTTP to the TLS port: no HTTP answer, the connection ends, weir lives on.
        with HttpConn(self.lb.https_port, timeout=10) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            data = c.read_until_close()
            self.assertFalse(data.startswith(b"HTTP/1.1 200"), data[:100])
        self.assertEqual(https_get(self.lb.https_port, "/", cafile=self.certs.ca).status, 200)
        weir_alive(self, self.lb)


def permissive_tls_server(tc, cert):
    """A Python TLS server that accepts TLS 1.0 up (SECLEVEL 0): shows s_client really tries old
    versions. Returns its port; it records the versions it negotiated."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    ctx.load_cert_chain(cert.path, cert.key)
    srv = socket.socket()
    srv.bind((HOST, 0))
    srv.listen(8)
    srv.settimeout(0.2)
    seen, stop = [], threading.Event()

    def loop():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except (socket.timeout, OSError):
                continue
            c.settimeout(5)
            try:
                with ctx.wrap_socket(c, server_side=True) as t:
                    seen.append(t.version())
            except (ssl.SSLError, OSError):
                c.close()

    t = threading.Thread(target=loop, daemon=True)
    t.start()

    def cleanup():
        stop.set()
        t.join(5)
        srv.close()

    tc.addCleanup(cleanup)
    return srv.getsockname()[1], seen


class VersionTest(TlsTestCase):
    OLD = ["-cipher", "DEFAULT@SECLEVEL=0"]

    def test_control_client_really_offers_old_versions(self):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            port, seen = permissive_tls_server(self, self.certs.a)
        for flag, ver in (("-tls1", "TLSv1"), ("-tls1_1", "TLSv1.1")):
            sc = s_client(port, flag, *self.OLD, servername="a.test")
            self.assertTrue(sc.accepted, f"the control server refused {flag}: s_client cannot test it here\n"
                                         f"{sc.tail()}")
            self.assertEqual(sc.version, ver, sc)

    def test_tls10_and_11_refused_12_and_13_accepted(self):
        lb = self.start_tls_lb(plain=False)
        for flag in ("-tls1", "-tls1_1"):
            with self.subTest(flag=flag):
                sc = s_client(lb.https_port, flag, *self.OLD, servername="a.test")
                self.assertFalse(sc.accepted, f"weir accepted {flag}: {sc}\n{sc.tail()}")
        for flag, ver in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            with self.subTest(flag=flag):
                sc = s_client(lb.https_port, flag, "-ign_eof", servername="a.test", input=HTTP_CLOSE)
                self.assertTrue(sc.accepted, f"weir refused {flag}:\n{sc.tail()}")
                self.assertEqual(sc.version, ver, sc)
                self.assertIn("Name: web", sc.text)
        weir_alive(self, lb)

    def test_min_version_13_refuses_12(self):
        lb = self.start_tls_lb(plain=False, tls_extra={"min_version": "1.3"})
        sc = s_client(lb.https_port, "-tls1_2", servername="a.test")
        self.assertFalse(sc.accepted, f"min_version 1.3 accepted TLS 1.2: {sc}")
        sc = s_client(lb.https_port, "-tls1_3", servername="a.test", input=HTTP_CLOSE)
        self.assertTrue(sc.accepted, sc.tail())
        self.assertEqual(sc.version, "TLSv1.3")
        # Python's client agrees.
        with self.assertRaises((ssl.SSLError, OSError)):
            served_cert(lb.https_port, "a.test", max_version=ssl.TLSVersion.TLSv1_2)
        self.assertEqual(https_get(lb.https_port, "/", cafile=self.certs.ca).status, 200)


class ResumptionTest(TlsTestCase):
    def setUp(self):
        super().setUp()
        self.lb = self.start_tls_lb(plain=False)

    def resume(self, flag):
        sess = os.path.join(self.tmp, f"sess{flag}.pem")
        # -ign_eof: s_client reads until weir closes (Connection: close), so a TLS 1.3 ticket sent
        # after the handshake is read and saved too.
        first = s_client(self.lb.https_port, flag, "-ign_eof", "-sess_out", sess, servername="a.test",
                         input=HTTP_CLOSE)
        self.assertTrue(first.accepted, first.tail())
        self.assertIn("Name: web", first.text)
        self.assertFalse(first.reused)
        self.assertTrue(os.path.exists(sess) and os.path.getsize(sess) > 0, "s_client saved no session")
        second = s_client(self.lb.https_port, flag, "-ign_eof", "-sess_in", sess, servername="a.test",
                          input=HTTP_CLOSE)
        self.assertTrue(second.accepted, second.tail())
        self.assertTrue(second.reused, f"session not resumed with {flag}:\n{second.tail(2500)}")
        self.assertIn("Name: web", second.text)

    def test_resume_tls12(self):
        self.resume("-tls1_2")

    def test_resume_tls13(self):
        self.resume("-tls1_3")

    def test_resume_with_python_client(self):
        ctx = client_context(self.certs.ca)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection((HOST, self.lb.https_port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="a.test") as s:
                s.sendall(HTTP_CLOSE)
                while s.recv(65536):
                    pass
                session = s.session
        with socket.create_connection((HOST, self.lb.https_port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="a.test", session=session) as s:
                self.assertTrue(s.session_reused, "TLS 1.2 session not resumed")


class HttpOverTlsTest(TlsTestCase):
    def test_forwarded_proto(self):
        lb = self.start_tls_lb()
        # A client's own X-Forwarded-Proto is replaced on both listeners.
        r = https_get(lb.https_port, "/p", cafile=self.certs.ca, headers=[("X-Forwarded-Proto", "http")])
        self.assertWhoami(r, "web")
        self.assertEqual(r.whoami_field("X-Forwarded-Proto"), "https", r.text)
        r = http_get(lb.plain_port, "/p", headers=[("X-Forwarded-Proto", "https")])
        self.assertWhoami(r, "web")
        self.assertEqual(r.whoami_field("X-Forwarded-Proto"), "http", r.text)

    def test_hsts(self):
        lb = self.start_tls_lb(tls_extra={"hsts": "180d"})
        for target in ("/", "/x?status=404", "/y?status=503"):
            r = https_get(lb.https_port, target, cafile=self.certs.ca)
            self.assertEqual(r.header_all("Strict-Transport-Security"), ["max-age=15552000"],
                             f"{target}: {r.headers}")
        r = curl(lb.url("/"), "--http2", resolve=lb.resolve(), cacert=self.certs.ca)
        self.assertEqual(r.code, 200, r.describe())
        self.assertEqual(r.header_all("strict-transport-security"), ["max-age=15552000"], r.headers)
        # Never over clear text (RFC 6797 7.2).
        r = http_get(lb.plain_port, "/")
        self.assertWhoami(r, "web")
        self.assertIsNone(r.header("Strict-Transport-Security"))

    def test_large_responses_complete_over_tls(self):
        # Many big bodies on fresh TLS connections: every byte arrives before any close_notify
        # (a TLS write path that loses a partial write shows up here, not on one download).
        lb = self.start_tls_lb(plain=False)
        size, short = 10_000_000, []
        for i in range(60):
            with https_conn(lb.https_port, "a.test", self.certs.ca, timeout=30) as c:
                try:
                    r = c.get(f"/big/{i}?size={size}", host="a.test", discard_body=True)
                    n, want = r.body_length, int(r.header("Content-Length"))
                except Exception as e:  # noqa: BLE001 - IncompleteResponse tells how much came
                    part = getattr(e, "partial", None)
                    n, want = (part.body_length if part else -1), f"{size}+"
                if n != want:
                    short.append(f"#{i}: {n} of {want} bytes")
        self.assertEqual(short, [], "responses cut short over TLS")
        weir_alive(self, lb)

    def test_no_hsts_unless_configured(self):
        lb = self.start_tls_lb(plain=False)
        r = https_get(lb.https_port, "/", cafile=self.certs.ca)
        self.assertIsNone(r.header("Strict-Transport-Security"))

    def test_redirect_https(self):
        https_port = free_port()
        lb = self.start_tls_lb(https_port=https_port, plain_extra={"redirect_https": https_port}, h2c=None)
        port, tls_port = lb.plain_port, lb.https_port
        cases = [
            ("GET", "/some/path?x=1&y=%20z", f"a.test:{port}", f"https://a.test:{tls_port}/some/path?x=1&y=%20z"),
            ("GET", "/", "example.org", f"https://example.org:{tls_port}/"),
            ("POST", "/form?a=b", f"Shop.Example:{port}", None),
            ("HEAD", "/h", "example.org", f"https://example.org:{tls_port}/h"),
        ]
        for method, target, host, location in cases:
            with self.subTest(method=method, target=target, host=host):
                with HttpConn(port) as c:
                    body = b"k=v" if method == "POST" else None
                    r = c.request(method, target, body=body, host=host)
                self.assertEqual(r.status, 308, f"{r!r} {r.text[:200]}")
                loc = r.header("Location")
                if location is None:
                    self.assertRegex(loc or "", rf"^https://(?i:shop\.example):{tls_port}/form\?a=b$")
                else:
                    self.assertEqual(loc, location)
        self.assertEqual(lb.requests(), 0, "a redirected request reached the backend")
        # The redirect target works.
        r = https_get(tls_port, "/some/path?x=1", cafile=self.certs.ca)
        self.assertWhoami(r, "web")

    def test_sticky_cookie_secure_only_over_tls(self):
        a, b = self.start_whoami("a"), self.start_whoami("b")
        lb = self.start_tls_lb([{"address": a.address, "name": "a"}, {"address": b.address, "name": "b"}],
                               backend_extra={"sticky": {"cookie": "srv"}})

        def attrs(set_cookie):
            parts = [p.strip() for p in set_cookie.split(";")]
            self.assertRegex(parts[0], r"^srv=\S+$")
            return {p.split("=", 1)[0].lower() for p in parts[1:]}

        r = https_get(lb.https_port, "/", cafile=self.certs.ca)
        self.assertWhoami(r)
        sc = r.header_all("Set-Cookie")
        self.assertEqual(len(sc), 1, r.headers)
        self.assertIn("secure", attrs(sc[0]), sc[0])
        r = http_get(lb.plain_port, "/")
        self.assertWhoami(r)
        sc = r.header_all("Set-Cookie")
        self.assertEqual(len(sc), 1, r.headers)
        self.assertNotIn("secure", attrs(sc[0]), sc[0])
        # The cookie sticks over TLS too.
        token = sc[0].split(";", 1)[0]
        names = {https_get(lb.https_port, "/", cafile=self.certs.ca, headers=[("Cookie", token)]).whoami_name()
                 for _ in range(4)}
        self.assertEqual(len(names), 1, names)


class CheckTest(TlsTestCase):
    """`weir check` loads every certificate and key: errors at the `cert:` key's position."""

    def config_with(self, cert_path, key_path):
        # The good certificate first, the one under test second: the error must point at the second.
        cfg = self.tls_config([free_port()], https_port=free_port(), plain_port=None, admin_port=free_port(),
                              certs=[self.certs.b])
        cfg["listeners"][0]["tls"]["certificates"].append({"cert": cert_path, "key": key_path})
        return cfg

    def check(self, cfg, name="weir.yaml"):
        path = self.write_config(cfg, name)
        p = self.run_weir("check", "-c", path)
        with open(path) as f:
            text = f.read()
        return path, text, p.returncode, p.stdout.decode(), p.stderr.decode()

    def cert_position(self, text, cert_path):
        for i, line in enumerate(text.splitlines(), 1):
            if re.search(r"\bcert: " + re.escape(cert_path) + r"$", line):
                return i, line.index("cert:") + 1
        raise AssertionError(f"no `cert: {cert_path}` line in\n{text}")

    def assertErrorAtCert(self, cfg, cert_path, mention=None, name="weir.yaml"):
        path, text, rc, so, se = self.check(cfg, name)
        self.assertEqual(rc, 1, f"weir check accepted it:\n{so}{se}")
        line, col = self.cert_position(text, cert_path)
        errors = [m for m in (LOC.match(l) for l in se.splitlines()) if m and "warning:" not in m["msg"]]
        self.assertTrue(errors, se)
        at = [m for m in errors if m["file"] == path and int(m["line"]) == line]
        self.assertTrue(at, f"no error at {path}:{line}:{col} (the cert: key):\n{se}")
        self.assertEqual(int(at[0]["col"]), col, f"error not at the column of `cert:`:\n{se}")
        if mention:
            self.assertRegex(at[0]["msg"], mention, se)
        self.assertNotIn("ok", so)
        return at[0]["msg"]

    def test_good_tls_config(self):
        path, text, rc, so, se = self.check(self.config_with(self.certs.a.path, self.certs.a.key))
        self.assertEqual(rc, 0, se)
        self.assertIn("ok", so)
        self.assertNotIn("warning", se)

    def test_missing_cert_file(self):
        missing = os.path.join(self.tmp, "missing.pem")
        self.assertErrorAtCert(self.config_with(missing, self.certs.a.key), missing, r"missing\.pem")

    def test_missing_key_file(self):
        missing = os.path.join(self.tmp, "missing.key")
        self.assertErrorAtCert(self.config_with(self.certs.a.path, missing), self.certs.a.path, r"missing\.key")

    def test_key_not_matching_cert(self):
        self.assertErrorAtCert(self.config_with(self.certs.a.path, self.certs.b.key), self.certs.a.path)

    def test_not_a_certificate(self):
        junk = os.path.join(self.tmp, "junk.pem")
        with open(junk, "w") as f:
            f.write("this is not PEM\n")
        self.assertErrorAtCert(self.config_with(junk, self.certs.a.key), junk)

    def test_expired_cert(self):
        old = self.certs.expired("expired", "a.test", ["a.test"])
        self.assertErrorAtCert(self.config_with(old.path, old.key), old.path, r"(?i)expir")
        # weir run refuses it too: exit 1, with the position.
        path = os.path.join(self.tmp, "weir.yaml")
        p = self.run_weir("run", "-c", path, timeout=20)
        self.assertEqual(p.returncode, 1, p.stderr.decode())
        self.assertRegex(p.stderr.decode(), re.escape(path) + r":\d+:\d+: .*(?i:expir)")

    def test_cert_expiring_soon_warns(self):
        soon = self.certs.leaf("soon", "a.test", ["a.test"], days=3)
        path, text, rc, so, se = self.check(self.config_with(soon.path, soon.key))
        self.assertEqual(rc, 0, f"a certificate valid 3 more days is not an error:\n{se}")
        self.assertIn("ok", so)
        line, col = self.cert_position(text, soon.path)
        warns = [m for m in (LOC.match(l) for l in se.splitlines()) if m and "warning" in m["msg"]]
        self.assertTrue(any(int(m["line"]) == line for m in warns), f"no warning at line {line}:\n{se}")
        self.assertRegex(se, r"(?i)expir")


class HotReloadTest(TlsTestCase):
    def test_cert_replaced_on_sighup_under_load(self):
        live = self.certs.copy(self.certs.a, self.tmp, "live")
        new = self.certs.leaf("rotated", "a.test", ["a.test", "*.wild.test"], org="weir rotated")
        lb = self.start_tls_lb(certs=[live, self.certs.b], workers=2)
        self.assertServes(lb.https_port, "a.test", self.certs.a)
        stop = threading.Event()
        seen, failures = [], []
        lock = threading.Lock()

        def client(i):
            n = 0
            while not stop.is_set():
                try:
                    t_start = time.monotonic()
                    r = https_get(lb.https_port, f"/load/{i}/{n}", sni="a.test", cafile=self.certs.ca, timeout=10)
                    with lock:
                        seen.append((t_start, r.cert_der))
                        if r.status != 200:
                            failures.append((r.status, r.text[:100]))
                except Exception as e:  # noqa: BLE001
                    with lock:
                        failures.append(repr(e))
                n += 1

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(seen) >= 20, 20, what="load before the reload")
            replace_cert(live, new)
            self.assertTrue(lb.reload(), lb.proc.stderr()[-2000:])
            wait_until(lambda: served_cert(lb.https_port, "a.test") == new.der, 10,
                       what="new connections to get the new certificate")
            t_switch = time.monotonic()
            with lock:
                n_at_switch = len(seen)
            wait_until(lambda: len(seen) >= n_at_switch + 20, 20, what="load after the reload")
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        self.assertFalse(any(t.is_alive() for t in threads), "client threads stuck")
        old_n = sum(1 for _, d in seen if d == self.certs.a.der)
        new_n = sum(1 for _, d in seen if d == new.der)
        print(f"\ncert hot reload: {len(seen)} requests, {old_n} old cert, {new_n} new cert, "
              f"{len(failures)} failures")
        self.assertEqual(failures, [])
        self.assertEqual(old_n + new_n, len(seen), "a certificate that is neither old nor new was served")
        self.assertGreater(old_n, 0)
        self.assertGreater(new_n, 0)
        # Once the switch was seen, every connection opened later got the new one.
        late = [d for t, d in seen if t > t_switch]
        self.assertTrue(late)
        stale = [d for d in late if d != new.der]
        if stale:
            self.fail(f"{len(stale)} handshakes got another certificate after the switch: {der_summary(stale[0])}")
        self.assertServes(lb.https_port, "b.test", self.certs.b)
        self.assertServes(lb.https_port, "x.wild.test", new)
        weir_alive(self, lb)

    def test_bad_new_cert_keeps_old(self):
        live = self.certs.copy(self.certs.a, self.tmp, "live")
        lb = self.start_tls_lb(certs=[live], plain=False)
        with open(live.key, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
        self.assertFalse(lb.reload(), "a broken key was applied")
        self.assertServes(lb.https_port, "a.test", self.certs.a)
        self.assertEqual(https_get(lb.https_port, "/", cafile=self.certs.ca).status, 200)


class UpstreamTlsTest(TlsTestCase):
    def origin(self, cert, name):
        o = TlsOrigin(cert, name)
        self.addCleanup(o.stop)
        return o

    def lb_for(self, origin, **tls):
        server = {"address": origin.address, "name": "origin", "tls": dict({"ca": self.certs.ca}, **tls)}
        return self.start_tls_lb([server])

    def test_reencrypt_verified(self):
        o = self.origin(self.certs.backend, "good")
        lb = self.lb_for(o, sni="backend.test", verify=True)
        r = http_get(lb.plain_port, "/via/plain?q=1", host="site.test")
        self.assertEqual(r.status, 200, r.text[:300])
        self.assertEqual(r.first_line(), "Origin: good")
        self.assertIn("GET /via/plain?q=1 HTTP/1.1", r.text)
        r = https_get(lb.https_port, "/via/tls", cafile=self.certs.ca)
        self.assertEqual(r.status, 200, r.text[:300])
        self.assertEqual(r.first_line(), "Origin: good")
        self.assertIn("X-Forwarded-Proto: https", r.text)
        r = curl(lb.url("/via/h2"), "--http2", resolve=lb.resolve(), cacert=self.certs.ca)
        self.assertEqual((r.code, r.version), (200, "2"), r.describe())
        self.assertEqual(r.text.split("\n", 1)[0], "Origin: good")
        self.assertIn("backend.test", o.sni, "weir did not send the configured SNI")
        self.assertEqual(o.requests, 3)

    def test_untrusted_origin_502(self):
        o = self.origin(self.certs.evil, "evil")
        lb = self.lb_for(o, sni="backend.test")
        for r in (http_get(lb.plain_port, "/x"), https_get(lb.https_port, "/x", cafile=self.certs.ca)):
            self.assertEqual(r.status, 502, r.text[:300])
            self.assertNotIn("Origin:", r.text)
            self.assertNotIn(o.address, r.text)
        self.assertEqual(o.requests, 0, "a request was sent to an origin that failed verification")
        weir_alive(self, lb)

    def test_wrong_name_502(self):
        o = self.origin(self.certs.backend, "good")
        lb = self.lb_for(o, sni="other.test")
        r = http_get(lb.plain_port, "/x")
        self.assertEqual(r.status, 502, r.text[:300])
        self.assertEqual(o.requests, 0)

    def test_verify_off_accepts_any(self):
        o = self.origin(self.certs.evil, "evil")
        lb = self.lb_for(o, sni="backend.test", verify=False)
        r = http_get(lb.plain_port, "/x")
        self.assertEqual(r.status, 200, r.text[:300])
        self.assertEqual(r.first_line(), "Origin: evil")

    def test_plain_server_behind_tls_config_502(self):
        # `tls:` on a server that speaks clear text: a clean 502, not a hang.
        w = self.start_whoami("cleartext")
        lb = self.start_tls_lb([{"address": w.address, "name": "origin", "tls": {"ca": self.certs.ca}}],
                               backend_extra={"timeouts": {"response": "5s"}})
        t0 = time.monotonic()
        r = http_get(lb.plain_port, "/x", timeout=20)
        self.assertIn(r.status, (502, 504), r.text[:300])
        self.assertLess(time.monotonic() - t0, 15)


if __name__ == "__main__":
    unittest.main()
