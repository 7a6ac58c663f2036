"""What a fleet needs of one instance (fleet.md): `freebind: true` binds a listener to an address
this host does not hold (a VRRP backup), and on SIGTERM the admin /healthz answers 503 at once
while the listeners keep serving for `limits.drain_grace`, so a checker moves the traffic away
before any connection is refused."""

import signal
import time
import unittest

from weirtest import (HOST, WeirTestCase, admin_get, free_port, http_get, lb_config, to_yaml,
                      wait_until)

# A documentation address (RFC 5737) that no interface of the test machine holds.
ABSENT = "192.0.2.77"


class DrainGraceTest(WeirTestCase):
    def test_healthz_503_during_grace_while_still_serving(self):
        w = self.start_whoami("g")
        admin = free_port()
        cfg = lb_config(free_port(), [w.port], admin_port=admin,
                        top_extra={"limits": {"drain_grace": "2s", "drain_timeout": "5s"}})
        lb = self.start_weir(cfg)
        self.assertEqual(admin_get(admin, "/healthz").status, 200)
        t0 = time.monotonic()
        lb.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: admin_get(admin, "/healthz").status == 503, 5, what="healthz 503")
        r = admin_get(admin, "/healthz")
        self.assertEqual(r.body, b"draining\n")
        # Still serving new connections during the grace.
        served = 0
        while time.monotonic() - t0 < 1.5:
            self.assertEqual(http_get(lb.port, "/").status, 200)
            served += 1
        self.assertGreater(served, 5)
        lb.proc.wait(15)
        self.assertGreaterEqual(time.monotonic() - t0, 2.0)
        self.assertEqual(lb.proc.returncode(), 0)
        lb.proc.wait_log(r"draining: /healthz answers 503; still serving for drain_grace")

    def test_without_grace_sigterm_stops_promptly(self):
        w = self.start_whoami("h")
        lb = self.start_lb([w.port])
        t0 = time.monotonic()
        lb.proc.send_signal(signal.SIGTERM)
        lb.proc.wait(10)
        self.assertLess(time.monotonic() - t0, 5.0)

    def test_freebind_binds_an_address_not_on_this_host(self):
        w = self.start_whoami("f")
        port = free_port()
        cfg = lb_config(port, [w.port], admin_port=free_port())
        cfg["listeners"][0]["listen"] = f"{ABSENT}:{port}"
        # Without freebind: the address cannot be bound (exit 3, the reason named).
        path = self.write_config(cfg, "nofree.yaml")
        p = self.spawn([self.env_weir(), "run", "-c", path], "weir-nofree", expect_exit=3)
        p.wait(10)
        self.assertIn(f"cannot listen on {ABSENT}:{port}", p.stderr())
        self.assertIn("Cannot assign requested address", p.stderr())
        # With it: weir runs (and serves once the address arrives; here the admin answers).
        cfg["listeners"][0]["freebind"] = True
        path = self.write_config(cfg, "free.yaml")
        p = self.spawn([self.env_weir(), "run", "-c", path], "weir-free")
        admin = int(cfg["admin"]["listen"].rsplit(":", 1)[1])
        wait_until(lambda: self.admin_up(admin), 10, what="weir with freebind to start")
        p.wait_log(rf"listener web on {ABSENT}:{port}")
        self.assertTrue(p.alive())
        # The check command accepts the key too.
        r = self.run_weir("check", "-c", path)
        self.assertEqual(r.returncode, 0, r.stderr)

    def env_weir(self):
        from weirtest import WEIR_BIN
        return WEIR_BIN

    def admin_up(self, port):
        try:
            return admin_get(port, "/healthz").status == 200
        except OSError:
            return False


if __name__ == "__main__":
    unittest.main()
