"""HTTP/3 through loss, delay and reordering: a network namespace made for the test (removed at
cleanup, on failure too) with whoami, weir and gtlsclient all inside it; a 10 MiB download and
a 10 MiB upload over HTTP/3 first on a clean loopback, then with 5% loss, 5 ms +- 2 ms delay and
25% reordering each way, both complete and correct; the time of each is printed.

The impairment is the kernel's netem (`tc qdisc add dev lo root netem loss 5% delay 5ms 2ms
reorder 25% 50%`) where the kernel has it; where it has not (sch_netem is a module some kernels
lack), the same figures applied by a UDP relay in the namespace (quictest.py relay: loss, delay
with jitter, and packets sent ahead of the delayed ones), which the output says.

Needs root (network namespaces), iproute2, gtlsclient (ngtcp2-client), python3-cryptography;
under CI=true it fails rather than skips without them."""

import os
import shutil
import time
import unittest

import quictest as q
from quictest import Http3Case
from tlstest import MB
from weirtest import WEIR_BIN, metrics, require

SIZE = 10 * MB
HTTPS, ADMIN, WHOAMI, RELAY = 18443, 18090, 18081, 18444
LOSS, DELAY_MS, JITTER_MS, REORDER = 0.05, 5, 2, 0.25
NETEM = ["netem", "loss", "5%", "delay", "5ms", "2ms", "reorder", "25%", "50%"]
TRANSFER_TIMEOUT = 200.0


class Http3LossTest(Http3Case):
    def setUp(self):
        super().setUp()
        require(os.geteuid() == 0, "needs root for a network namespace", self)
        require(os.access(q.IP, os.X_OK), "needs iproute2 (ip)", self)
        self.ns = q.NetNs(self._testMethodName[-8:])
        # Registered before anything is spawned inside: cleanups run last-in first-out.
        self.addCleanup(self.ns.remove)

    def start_inside(self):
        ns = self.ns
        self.spawn(ns.args([WEIR_BIN, "whoami", "--listen", f"127.0.0.1:{WHOAMI}", "--name", "web"]),
                   "whoami", expect_exit=0).wait_log(r"whoami web listening")
        cfg = self.tls_config([WHOAMI], https_port=HTTPS, plain_port=None, admin_port=ADMIN,
                              https_extra={"http3": True})
        path = self.write_config(cfg, "weir-netns.yaml")
        weir = self.spawn(ns.args([WEIR_BIN, "run", "-c", path]), "weir", expect_exit=0, stop_timeout=40)
        weir.wait_log(r"running with \d+ worker")
        return weir

    def transfer(self, port: int, label: str, upload: str) -> dict:
        """A 10 MiB download and a 10 MiB upload over HTTP/3 to port inside the namespace,
        checked; returns their times."""
        out = {}
        dl = os.path.join(self.tmp, f"dl-{label}")
        r = q.gtls(port, f"/big-{label}?size={SIZE}", authority=f"a.test:{HTTPS}", download=dl,
                   netns=self.ns.name, timeout=TRANSFER_TIMEOUT, idle_timeout="30s")
        self.assertH3Ok(r, 1)
        s = r.first
        self.assertIsNotNone(s.file, f"{label}: nothing downloaded in {dl}\n{r.describe()}")
        with open(s.file, "rb") as f:
            body = f.read()
        text_end = body[:4096].rfind(b"\n") + 1  # whoami's text, then the 'x' filler (no newline)
        self.assertTrue(body.startswith(b"Name: web\n"), body[:200])
        self.assertEqual(len(body), text_end + SIZE, f"{label}: downloaded {len(body)} bytes, "
                                                     f"expected {text_end} + {SIZE}")
        self.assertEqual(body.count(b"x", text_end), SIZE, f"{label}: body bytes other than the filler")
        out["download"] = r.elapsed
        r = q.gtls(port, f"/up-{label}", authority=f"a.test:{HTTPS}", data=upload, netns=self.ns.name,
                   timeout=TRANSFER_TIMEOUT, idle_timeout="30s")
        self.assertH3Ok(r, 1)
        self.assertEqual(r.first.whoami_field("Body-Length"), str(SIZE), r.first.text[:500])
        self.assertIn(f"POST /up-{label} HTTP/1.1", r.first.text)
        out["upload"] = r.elapsed
        return out

    def test_download_and_upload_through_loss_and_reordering(self):
        t_start = time.monotonic()
        weir = self.start_inside()
        upload = os.path.join(self.tmp, "upload.bin")
        with open(upload, "wb") as f:
            f.write(os.urandom(SIZE))
        clean = self.transfer(HTTPS, "clean", upload)

        tc = shutil.which("tc") or q.TC
        p = self.ns.run([tc, "qdisc", "add", "dev", "lo", "root", *NETEM]) if os.access(tc, os.X_OK) else None
        if p is not None and p.returncode == 0:
            how = "netem: " + " ".join(NETEM[1:])
            port = HTTPS
            relay = None
        else:
            why = (p.stderr.strip() if p is not None else "tc not installed")
            how = (f"UDP relay (no netem here: {why}): loss {LOSS:.0%} each way, delay {DELAY_MS} ms +- "
                   f"{JITTER_MS} ms, {REORDER:.0%} sent ahead of the delayed ones")
            relay = self.spawn(self.ns.args([q.PYTHON, os.path.abspath(q.__file__), "relay", str(RELAY), str(HTTPS),
                                             str(LOSS), str(DELAY_MS), str(JITTER_MS), str(REORDER), "1"]),
                               "relay", expect_exit=0)
            deadline = time.monotonic() + 10
            while "relay ready" not in relay.stdout():
                self.assertTrue(relay.alive() and time.monotonic() < deadline, relay.stderr()[-2000:])
                time.sleep(0.05)
            port = RELAY
        lossy = self.transfer(port, "lossy", upload)
        stats = ""
        if relay is not None:
            relay.stop()
            stats = relay.stdout().strip().splitlines()[-1]
        else:
            s = self.ns.run([tc, "-s", "qdisc", "show", "dev", "lo"])
            stats = " ".join(s.stdout.split())
        with q.in_netns(self.ns.name):
            m = metrics(ADMIN)
        print(f"\nHTTP/3 10 MiB, clean loopback: download {clean['download']:.1f}s "
              f"({SIZE / MB / clean['download']:.1f} MiB/s), upload {clean['upload']:.1f}s "
              f"({SIZE / MB / clean['upload']:.1f} MiB/s)")
        print(f"HTTP/3 10 MiB through {how}: download {lossy['download']:.1f}s "
              f"({SIZE / MB / lossy['download']:.1f} MiB/s), upload {lossy['upload']:.1f}s "
              f"({SIZE / MB / lossy['upload']:.1f} MiB/s)")
        print(f"impairment counters: {stats}")
        print("weir: " + ", ".join(f"{k} {m.get(k):.0f}" for k in (
            "weir_http3_connections_total", "weir_quic_connections_open", "weir_quic_packets_dropped_total",
            "weir_quic_retries_total")) + f"; total {time.monotonic() - t_start:.1f}s")
        self.assertTrue(weir.alive(), weir.stderr()[-3000:])


if __name__ == "__main__":
    unittest.main()
