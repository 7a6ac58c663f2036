"""OCSP stapling (issue 17, point 6) against a real responder.

A CA made here with the openssl CLI (`openssl ca` and its index.txt database), a delegated OCSP
signer (RSA, extendedKeyUsage OCSPSigning), and leaf certificates whose Authority Information
Access points at a loopback port where the test runs `openssl ocsp -index ... -port`. Then:

- `ocsp: { fetch: true }`: weir fetches the response itself; `openssl s_client -status` shows it
  stapled ("Cert Status: good"), over TLS 1.3 and 1.2.
- `ocsp: { file: ... }`: a response made with `openssl ocsp -respout`; after the certificate is
  revoked and the file replaced, SIGHUP staples the revoked one; a reload with a bad file is
  refused and the running response stays.
- `weir check`: a garbage file, a response for another certificate, an expired response (the
  responder's own response re-dated to 2020 and re-signed with the responder key), a certificate
  without its issuer in the PEM, a `fetch` without a responder URL: exit 1 and FILE:LINE:COL at
  the `ocsp:` key; a revoked response is a warning.
- the responder down with `fetch: true`: TLS works without a staple ("OCSP response: no response
  sent"), a warning is logged; once the responder is up, the retry staples it.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from tlstest import s_client, tool
from weirtest import HOST, WeirTestCase, free_port, wait_until

LOC = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): (?P<msg>.+)$")


def _openssl(args, cwd, input=None, timeout=30.0) -> bytes:
    p = subprocess.run([tool("openssl"), *args], cwd=cwd, capture_output=True, input=input,
                       stdin=None if input is not None else subprocess.DEVNULL, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed:\n"
                             f"{p.stderr.decode('utf-8', 'replace')[-2000:]}")
    return p.stdout


class Leaf:
    """A leaf certificate: `crt` alone, `pem` = crt + the CA (the chain weir serves), its key."""

    def __init__(self, stem: str, folder: str):
        self.stem = stem
        self.crt = os.path.join(folder, f"{stem}.crt")
        self.pem = os.path.join(folder, f"{stem}.pem")
        self.key = os.path.join(folder, f"{stem}.key")


class Pki:
    """The CA, its `openssl ca` database, the OCSP signer, and leaves issued on demand."""

    def __init__(self, folder: str):
        self.dir = folder
        self.ca_key = os.path.join(folder, "ca.key")
        self.ca = os.path.join(folder, "ca.pem")
        self.rkey = os.path.join(folder, "ocsp-signer.key")
        self.rsigner = os.path.join(folder, "ocsp-signer.pem")
        self.db = os.path.join(folder, "db")
        self.index = os.path.join(self.db, "index.txt")
        os.makedirs(self.db)
        open(self.index, "w").close()
        with open(os.path.join(self.db, "index.txt.attr"), "w") as f:
            f.write("unique_subject = no\n")
        with open(os.path.join(self.db, "serial"), "w") as f:
            f.write("1000\n")
        self._ssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", self.ca_key])
        self._ssl(["req", "-x509", "-new", "-key", self.ca_key, "-out", self.ca, "-days", "3650", "-sha256",
                   "-subj", "/CN=weir OCSP test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        # The responder signs with a certificate of its own (delegated, RSA: a fixed-size signature
        # lets expired_response() re-sign in place).
        self._ssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", self.rkey])
        csr = os.path.join(folder, "ocsp-signer.csr")
        self._ssl(["req", "-new", "-key", self.rkey, "-subj", "/CN=weir OCSP test responder", "-out", csr])
        ext = os.path.join(folder, "ocsp-signer.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=OCSPSigning\n")
        self._ssl(["x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-set_serial", "2",
                   "-days", "30", "-sha256", "-extfile", ext, "-out", self.rsigner])

    def _ssl(self, args, **kw) -> bytes:
        return _openssl(args, self.dir, **kw)

    def leaf(self, stem: str, cn: str = "a.test", ocsp_port: int | None = None, chain: bool = True) -> Leaf:
        """A leaf for `cn` issued through `openssl ca` (so the responder knows it), with an AIA
        OCSP URL http://127.0.0.1:ocsp_port/ when given; its .pem has the CA after it if chain."""
        leaf = Leaf(stem, self.dir)
        self._ssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", leaf.key])
        csr = os.path.join(self.dir, f"{stem}.csr")
        self._ssl(["req", "-new", "-key", leaf.key, "-subj", f"/CN={cn}", "-out", csr])
        cnf = os.path.join(self.dir, f"{stem}.cnf")
        with open(cnf, "w") as f:
            f.write("[ca]\ndefault_ca = testca\n[testca]\n"
                    f"database = {self.index}\nnew_certs_dir = {self.db}\nserial = {self.db}/serial\n"
                    "default_md = sha256\ndefault_days = 30\npolicy = anything\nunique_subject = no\n"
                    "email_in_dn = no\n[anything]\ncommonName = supplied\n"
                    "[leaf]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n"
                    f"subjectAltName = DNS:{cn}\n"
                    + (f"authorityInfoAccess = OCSP;URI:http://{HOST}:{ocsp_port}/\n" if ocsp_port else ""))
        self._ssl(["ca", "-batch", "-config", cnf, "-cert", self.ca, "-keyfile", self.ca_key, "-in", csr,
                   "-out", leaf.crt, "-extensions", "leaf", "-notext"])
        with open(leaf.pem, "w") as out:
            for part in ([leaf.crt, self.ca] if chain else [leaf.crt]):
                with open(part) as f:
                    out.write(f.read())
        leaf.cnf = cnf
        return leaf

    def revoke(self, leaf: Leaf):
        self._ssl(["ca", "-config", leaf.cnf, "-cert", self.ca, "-keyfile", self.ca_key, "-revoke", leaf.crt])

    def response(self, leaf: Leaf, out: str, ndays: int = 1) -> str:
        """A DER response for leaf from the index as it is now (`openssl ocsp -reqin ... -respout`,
        no network)."""
        req = os.path.join(self.dir, f"{leaf.stem}.req")
        self._ssl(["ocsp", "-issuer", self.ca, "-cert", leaf.crt, "-no_nonce", "-reqout", req])
        self._ssl(["ocsp", "-index", self.index, "-rsigner", self.rsigner, "-rkey", self.rkey, "-CA", self.ca,
                   "-rmd", "sha256", "-reqin", req, "-respout", out, "-ndays", str(ndays)])
        return out

    def expired_response(self, leaf: Leaf, out: str) -> str:
        """A response for leaf whose producedAt/thisUpdate are 2020-01-01 and nextUpdate 2020-01-02,
        properly signed: the responder's own response, its dates rewritten in place and its
        tbsResponseData signed again with the responder key (RSA-2048: same signature size)."""
        with open(self.response(leaf, out), "rb") as f:
            der = bytearray(f.read())
        _, body, _ = _tlv(der, 0)                   # OCSPResponse
        _, status_end = _skip(der, body)            # responseStatus
        _, rb, _ = _tlv(der, status_end)            # [0] responseBytes
        _, seq, _ = _tlv(der, rb)                   # ResponseBytes
        _, oid_end = _skip(der, seq)                # responseType
        _, octets, _ = _tlv(der, oid_end)           # response OCTET STRING
        _, basic, _ = _tlv(der, octets)             # BasicOCSPResponse
        tbs_start = basic
        _, tbs_end = _skip(der, tbs_start)          # tbsResponseData (whole TLV)
        _, sigalg_end = _skip(der, tbs_end)         # signatureAlgorithm
        tag, sig, sig_len = _tlv(der, sigalg_end)   # signature BIT STRING
        assert tag == 0x03 and der[sig] == 0, "unexpected BIT STRING"
        tbs = der[tbs_start:tbs_end]
        times = [m.start() for m in re.finditer(rb"\x18\x0f\d{14}Z", bytes(tbs))]
        assert len(times) == 3, f"expected producedAt, thisUpdate, nextUpdate; found {len(times)} times"
        for at, when in zip(times, (b"20200101000000Z", b"20200101000000Z", b"20200102000000Z")):
            tbs[at + 2:at + 17] = when
        der[tbs_start:tbs_end] = tbs
        signature = self._ssl(["dgst", "-sha256", "-sign", self.rkey], input=bytes(tbs))
        assert len(signature) == sig_len - 1, (len(signature), sig_len)
        der[sig + 1:sig + sig_len] = signature
        with open(out, "wb") as f:
            f.write(der)
        return out

    def responder_args(self, port: int) -> list[str]:
        return [tool("openssl"), "ocsp", "-index", self.index, "-port", str(port), "-rsigner", self.rsigner,
                "-rkey", self.rkey, "-CA", self.ca, "-rmd", "sha256", "-nmin", "1"]


def _tlv(data, off: int):
    """(tag, start of the value, length of the value) of the DER element at off."""
    tag, length, head = data[off], data[off + 1], 2
    if length & 0x80:
        n = length & 0x7F
        length, head = int.from_bytes(data[off + 2:off + 2 + n], "big"), 2 + n
    return tag, off + head, length


def _skip(data, off: int):
    """(tag, offset after the element at off)."""
    tag, start, length = _tlv(data, off)
    return tag, start + length


class OcspTestCase(WeirTestCase):
    pki: Pki

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        folder = tempfile.mkdtemp(prefix="weir-e2e-ocsp-")
        cls.addClassCleanup(shutil.rmtree, folder, True)
        cls.pki = Pki(folder)

    def config(self, port: int, certs: list[dict], tls_extra: dict | None = None) -> dict:
        tls = {"certificates": certs}
        tls.update(tls_extra or {})
        return {"workers": 1,
                "listeners": [{"name": "https", "listen": f"{HOST}:{port}", "tls": tls, "backend": "web"}],
                "backends": [{"name": "web", "servers": [{"address": f"{HOST}:{free_port()}"}]}]}

    def start_responder(self, port: int):
        """`openssl ocsp -port`, waited for by its log line: not by connecting, since a connection
        closed without a request leaves this single-threaded responder stuck."""
        p = self.spawn(self.pki.responder_args(port), "ocsp-responder")

        def up():
            if not p.alive():
                raise AssertionError(f"the OCSP responder exited with {p.returncode()}:\n{p.stderr()}{p.stdout()}")
            return "waiting for OCSP client connections" in p.stdout() + p.stderr()

        wait_until(up, 10, 0.02, "the OCSP responder to listen")
        return p

    def status(self, port: int, *args: str):
        """`openssl s_client -status` against weir: (stapled cert status or None, the output)."""
        out = s_client(port, "-status", *args, servername="a.test", timeout=15)
        self.assertTrue(out.accepted, f"no TLS session: {out.tail()}")
        m = re.search(r"Cert Status: (\w+)", out.text)
        if m is None:
            self.assertIn("OCSP response: no response sent", out.text, out.tail(3000))
        else:
            self.assertIn("OCSP Response Status: successful", out.text)
        return (m.group(1) if m else None), out.text

    def wait_status(self, port: int, want: str, timeout: float, weir=None):
        last = [None]

        def stapled():
            last[0] = self.status(port)
            return last[0][0] == want

        try:
            wait_until(stapled, timeout, 0.25, f"a stapled response with Cert Status: {want}")
        except AssertionError as e:
            log = f"\n--- weir's log ---\n{weir.proc.stderr()[-3000:]}" if weir is not None else ""
            raise AssertionError(f"{e}; last s_client output:\n{_status_lines((last[0] or (None, ''))[1])}"
                                 f"{log}") from None
        return last[0][1]


def _status_lines(text: str) -> str:
    return "\n".join(line.strip() for line in text.splitlines()
                     if re.search(r"OCSP response:|OCSP Response Status|Cert Status|Next Update|Revocation Time",
                                  line))


class FetchTest(OcspTestCase):
    def test_fetched_from_the_responder_and_stapled(self):
        rport = free_port()
        leaf = self.pki.leaf("fetched", ocsp_port=rport)
        self.start_responder(rport)
        port = free_port()
        w = self.start_weir(self.config(port, [{"cert": leaf.pem, "key": leaf.key, "ocsp": {"fetch": True}}]))
        text = self.wait_status(port, "good", 10, w)
        print("\nfetch: true, s_client -status:\n" + _status_lines(text))
        self.assertIn("OCSP Response Status: successful", text)
        self.assertRegex(w.proc.stderr(), r"INFO +OCSP: certificate .*fetched\.pem: response fetched from "
                                          rf"http://{HOST}:{rport}/: good")
        # TLS 1.2 staples too; a client that does not ask gets no staple and a normal handshake.
        self.assertEqual(self.status(port, "-tls1_2")[0], "good")
        plain = s_client(port, servername="a.test", timeout=15)
        self.assertTrue(plain.accepted, plain.tail())
        self.assertNotIn("OCSP response", plain.text)
        # A reload keeps the response fetched so far (same certificate, same responder): stapled
        # at once, not fetched again.
        fetched = len(re.findall(r"response fetched from", w.proc.stderr()))
        self.assertTrue(w.reload(), w.proc.stderr()[-2000:])
        self.assertEqual(self.status(port)[0], "good")
        self.assertEqual(len(re.findall(r"response fetched from", w.proc.stderr())), fetched)

    def test_responder_down_then_up(self):
        rport = free_port()
        leaf = self.pki.leaf("late", ocsp_port=rport)
        port = free_port()
        # The listener's `ocsp:` is the default of its certificates.
        w = self.start_weir(self.config(port, [{"cert": leaf.pem, "key": leaf.key}],
                                        tls_extra={"ocsp": {"fetch": True}}))
        w.proc.wait_log(r"WARN +OCSP: certificate .*late\.pem: cannot connect to "
                        rf"{re.escape(HOST)}:{rport}: Connection refused; retrying in .* \(no response stapled\)")
        status, text = self.status(port)
        self.assertIsNone(status, text)
        print("\nresponder down, s_client -status: " + _status_lines(text))
        self.start_responder(rport)
        started = time.monotonic()
        text = self.wait_status(port, "good", 20, w)
        print(f"responder up: stapled {time.monotonic() - started:.1f}s later:\n" + _status_lines(text))


class FileTest(OcspTestCase):
    def test_file_then_revoked_on_sighup(self):
        leaf = self.pki.leaf("filed")
        live = os.path.join(self.tmp, "filed.ocsp.der")
        self.pki.response(leaf, live)
        port = free_port()
        cfg = self.config(port, [{"cert": leaf.pem, "key": leaf.key, "ocsp": {"file": "filed.ocsp.der"}}])
        w = self.start_weir(cfg)  # the file's path is relative to the config file
        status, text = self.status(port)
        self.assertEqual(status, "good", text)
        print("\nfile, s_client -status:\n" + _status_lines(text))

        self.pki.revoke(leaf)
        new = self.pki.response(leaf, os.path.join(self.tmp, "revoked.der"))
        os.replace(new, live)
        # The old response is still what weir staples until the reload.
        self.assertEqual(self.status(port)[0], "good")
        self.assertTrue(w.reload(), w.proc.stderr()[-2000:])
        self.assertRegex(w.proc.stderr(), r"WARN .*OCSP response .*filed\.ocsp\.der says certificate .* is revoked")
        status, text = self.status(port)
        self.assertEqual(status, "revoked", text)
        print("after SIGHUP:\n" + _status_lines(text))

        # A reload with a bad response file is refused: the running one stays.
        with open(live + ".tmp", "wb") as f:
            f.write(b"not an OCSP response")
        os.replace(live + ".tmp", live)
        self.assertFalse(w.reload())
        self.assertRegex(w.proc.stderr(), r"ERROR .*:\d+:\d+: OCSP response .*filed\.ocsp\.der is not a DER OCSP response")
        self.assertEqual(self.status(port)[0], "revoked")


class CheckTest(OcspTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.leaf = cls.pki.leaf("checked", ocsp_port=free_port())
        cls.other = cls.pki.leaf("other")
        cls.lonely = cls.pki.leaf("lonely", ocsp_port=free_port(), chain=False)
        cls.no_aia = cls.pki.leaf("noaia")

    def check(self, ocsp: dict, leaf: Leaf | None = None):
        leaf = leaf or self.leaf
        cfg = self.config(free_port(), [{"cert": leaf.pem, "key": leaf.key, "ocsp": ocsp}])
        path = self.write_config(cfg)
        p = self.run_weir("check", "-c", path)
        with open(path) as f:
            text = f.read()
        lines = [i for i, line in enumerate(text.splitlines(), 1) if re.match(r"\s*ocsp:", line)]
        self.assertEqual(len(lines), 1, text)
        line = lines[0]
        col = text.splitlines()[line - 1].index("ocsp:") + 1
        return path, line, col, p.returncode, p.stdout.decode(), p.stderr.decode()

    def assertErrorAtOcsp(self, ocsp: dict, mention: str, leaf: Leaf | None = None):
        path, line, col, rc, so, se = self.check(ocsp, leaf)
        self.assertEqual(rc, 1, f"weir check accepted it:\n{so}{se}")
        at = [m for m in (LOC.match(l) for l in se.splitlines())
              if m and m["file"] == path and int(m["line"]) == line and int(m["col"]) == col
              and not m["msg"].startswith("warning:")]
        self.assertTrue(at, f"no error at {path}:{line}:{col} (the ocsp: key):\n{se}")
        self.assertRegex(at[0]["msg"], mention, se)
        print(f"\n  {se.strip()}")
        return se

    def test_good_response_file(self):
        der = self.pki.response(self.leaf, os.path.join(self.tmp, "good.der"))
        path, line, col, rc, so, se = self.check({"file": der})
        self.assertEqual(rc, 0, se)
        self.assertIn("ok", so)
        self.assertEqual(se, "")

    def test_garbage_file(self):
        junk = os.path.join(self.tmp, "junk.der")
        with open(junk, "wb") as f:
            f.write(b"\x30\x03garbage that is not DER at all\n")
        self.assertErrorAtOcsp({"file": junk}, r"OCSP response .*junk\.der is not a DER OCSP response")

    def test_missing_file(self):
        missing = os.path.join(self.tmp, "missing.der")
        self.assertErrorAtOcsp({"file": missing}, r"cannot read OCSP response .*missing\.der: No such file")

    def test_response_for_another_certificate(self):
        der = self.pki.response(self.other, os.path.join(self.tmp, "other.der"))
        self.assertErrorAtOcsp({"file": der}, r"other\.der is for another certificate .*not for .*checked\.pem")

    def test_expired_response(self):
        der = self.pki.expired_response(self.leaf, os.path.join(self.tmp, "expired.der"))
        self.assertErrorAtOcsp({"file": der}, r"expired\.der expired on 2020-01-02 00:00:00 UTC")
        # weir run refuses it too.
        cfg = self.config(free_port(), [{"cert": self.leaf.pem, "key": self.leaf.key, "ocsp": {"file": der}}])
        p = self.run_weir("run", "-c", self.write_config(cfg, "run.yaml"), timeout=20)
        self.assertEqual(p.returncode, 1, p.stderr.decode())
        self.assertRegex(p.stderr.decode(), r"run\.yaml:\d+:\d+: OCSP response .* expired on")

    def test_no_issuer_in_the_pem(self):
        self.assertErrorAtOcsp({"fetch": True}, r"issuer of certificate .*lonely\.pem is not in that file",
                               leaf=self.lonely)
        der = self.pki.response(self.lonely, os.path.join(self.tmp, "lonely.der"))
        self.assertErrorAtOcsp({"file": der}, r"issuer of certificate .*lonely\.pem is not in that file",
                               leaf=self.lonely)

    def test_fetch_without_responder_url(self):
        self.assertErrorAtOcsp({"fetch": True}, r"names no OCSP responder", leaf=self.no_aia)

    def test_revoked_response_is_a_warning(self):
        leaf = self.pki.leaf("gone", ocsp_port=free_port())
        self.pki.revoke(leaf)
        der = self.pki.response(leaf, os.path.join(self.tmp, "gone.der"))
        path, line, col, rc, so, se = self.check({"file": der}, leaf)
        self.assertEqual(rc, 0, se)
        self.assertRegex(se, rf"{re.escape(path)}:{line}:{col}: warning: OCSP response .* says certificate .* is revoked")


if __name__ == "__main__":
    unittest.main()
