"""BGP anycast through a local BIRD (fleet.md `announce`): weir enables the BIRD protocol that
announces the VIP while its backends are healthy, disables it when they all fail, and withdraws
it on SIGTERM before it stops serving; a BIRD that goes away is logged and, once back, gets the
state again, while weir serves on.

Two network namespaces joined by a veth pair (192.0.2.1 <-> 192.0.2.2, RFC 5737 addresses that
exist only inside them): in A, BIRD "lb" (a static route for the VIP 198.51.100.10/32 exported by
the BGP protocol `vip_web`, disabled in its config so that weir is what enables it), weir and two
`weir whoami` servers on A's loopback; in R, BIRD "router", a passive BGP peer whose table shows
whether the VIP is announced. Needs root (namespaces) and bird2; under CI=true it fails rather
than skips without them."""

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import unittest

from weirtest import (WEIR_BIN, WeirTestCase, admin_get, http_get, http_request, pid_alive,
                      require, to_yaml, wait_until)

BIRD = "/usr/sbin/bird"
VIP = "198.51.100.10/32"
LB_ADDR, ROUTER_ADDR = "192.0.2.1", "192.0.2.2"
LISTEN, ADMIN, WHOAMI = 18080, 18090, (18081, 18082)

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def in_netns(name: str):
    """Runs the block with this (main) thread in network namespace `name`: sockets made inside
    stay there. Processes must not be started inside (spawn with `ip netns exec`)."""
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


def bird_cli(sock_path: str, command: str, timeout: float = 2.0) -> tuple[int, str]:
    """One command over a BIRD control socket (its CLI protocol): (last code, text)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        f = s.makefile("rb")
        f.readline()  # 0001 BIRD x.y ready.
        s.sendall(command.encode() + b"\n")
        lines = []
        while True:
            line = f.readline().decode("utf-8", "replace").rstrip("\n")
            if not line:
                raise OSError("BIRD closed the connection")
            lines.append(line)
            if len(line) >= 5 and line[:4].isdigit() and line[4] == " ":
                return int(line[:4]), "\n".join(lines)


def lb_bird_conf() -> str:
    return f"""
router id {LB_ADDR};
log stderr all;
protocol device {{}}
protocol static vip_routes {{ ipv4; route {VIP} blackhole; }}
# The VIP's BGP session: disabled here; weir enables it while its backends are healthy.
protocol bgp vip_web {{
  disabled;
  local {LB_ADDR} as 65001;
  neighbor {ROUTER_ADDR} as 65000;
  hold time 3; keepalive time 1;
  connect delay time 1; connect retry time 1; error wait time 1, 2;
  ipv4 {{ import none; export where net = {VIP}; }};
}}
"""


def router_bird_conf() -> str:
    return f"""
router id {ROUTER_ADDR};
log stderr all;
protocol device {{}}
protocol bgp lb {{
  local {ROUTER_ADDR} as 65000;
  neighbor {LB_ADDR} as 65001;
  passive on;
  hold time 3; keepalive time 1; error wait time 1, 2;
  ipv4 {{ import all; export none; }};
}}
"""


class BgpAnnounceTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        require(os.geteuid() == 0, "needs root for network namespaces", self)
        require(shutil.which("ip") is not None, "needs iproute2 (ip)", self)
        require(os.access(BIRD, os.X_OK), f"needs bird2 ({BIRD})", self)
        tag = f"weirbgp-{os.getpid()}-{self._testMethodName[-6:]}"
        self.ns_a, self.ns_r = f"{tag}-a", f"{tag}-r"
        # Registered before any process: cleanups run last-in first-out, so the namespaces go
        # after everything that runs in them has stopped.
        for ns in (self.ns_a, self.ns_r):
            self.ip("netns", "add", ns)
            self.addCleanup(subprocess.run, ["ip", "netns", "del", ns], capture_output=True)
        self.ip("-n", self.ns_a, "link", "add", "va", "type", "veth", "peer", "name", "vr",
                "netns", self.ns_r)
        for ns, dev, addr in ((self.ns_a, "va", LB_ADDR), (self.ns_r, "vr", ROUTER_ADDR)):
            self.ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            self.ip("-n", ns, "link", "set", dev, "up")
            self.ip("-n", ns, "link", "set", "lo", "up")
        self.lb_sock = os.path.join(self.tmp, "lb.ctl")
        self.router_sock = os.path.join(self.tmp, "router.ctl")
        self.write_config(lb_bird_conf(), "lb-bird.conf")
        self.write_config(router_bird_conf(), "router-bird.conf")
        self.router = self.start_bird(self.ns_r, "router")
        self.lb_bird = self.start_bird(self.ns_a, "lb")
        self.whoamis = []
        for i, port in enumerate(WHOAMI):
            p = self.spawn(["ip", "netns", "exec", self.ns_a, WEIR_BIN, "whoami", "--listen",
                            f"127.0.0.1:{port}", "--name", f"s{i + 1}"], f"whoami-s{i + 1}",
                           expect_exit=0)
            self.whoamis.append(p)
            wait_until(lambda: self.accepts(port), 10, what=f"whoami on {port} in {self.ns_a}")

    # -- helpers --------------------------------------------------------------------------------

    def ip(self, *args):
        r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise AssertionError(f"ip {' '.join(args)}: {r.stderr.strip()}")

    def start_bird(self, ns: str, name: str):
        sock = os.path.join(self.tmp, f"{name}.ctl")
        conf = os.path.join(self.tmp, f"{name}-bird.conf")
        pid = os.path.join(self.tmp, f"{name}-bird.pid")
        p = self.spawn(["ip", "netns", "exec", ns, BIRD, "-s", sock, "-c", conf, "-P", pid, "-f"],
                       f"bird-{name}", expect_exit=None)

        def up():
            if not p.alive():
                raise AssertionError(f"bird {name} exited:\n{p.stderr()[-3000:]}")
            try:
                return bird_cli(sock, "show status")[0] == 13
            except OSError:
                return False

        wait_until(up, 10, what=f"bird {name} to answer on {sock}")
        return p

    def accepts(self, port: int) -> bool:
        with in_netns(self.ns_a):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False

    def vip_at_router(self) -> bool:
        code, text = bird_cli(self.router_sock, f"show route {VIP}")
        return code == 0 and VIP in text

    def wait_vip(self, present: bool, timeout: float) -> float:
        """Polls the router's table every 20 ms; returns the seconds it took."""
        t0 = time.monotonic()
        while self.vip_at_router() != present:
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"VIP {'not announced' if present else 'still announced'} "
                                     f"at the router after {timeout}s\n--- weir ---\n"
                                     f"{self.weir.stderr()[-3000:]}")
            time.sleep(0.02)
        return time.monotonic() - t0

    def get(self, port: int = LISTEN):
        with in_netns(self.ns_a):
            return http_get(port, "/")

    def metric(self, name: str) -> str:
        with in_netns(self.ns_a):
            text = admin_get(ADMIN, "/metrics").text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return line.split()[1]
        raise AssertionError(f"{name} not in /metrics")

    def set_health(self, status: int):
        for port in WHOAMI:
            with in_netns(self.ns_a):
                r = http_request(port, "POST", "/healthz", body=str(status).encode())
            self.assertLess(r.status, 300)

    def start_lb_weir(self, limits=None):
        cfg = {
            "workers": 1,
            "admin": {"listen": f"127.0.0.1:{ADMIN}"},
            "listeners": [{"name": "web", "listen": f"127.0.0.1:{LISTEN}", "backend": "web"}],
            "backends": [{
                "name": "web",
                "health_check": {"type": "http", "path": "/healthz", "interval": "200ms",
                                 "timeout": "200ms", "rise": 2, "fall": 2},
                "servers": [{"address": f"127.0.0.1:{p}"} for p in WHOAMI],
            }],
            "announce": {"bird_socket": self.lb_sock, "protocols": ["vip_web"],
                         "when": {"backends": ["web"], "min_healthy": 1}},
        }
        if limits:
            cfg["limits"] = limits
        path = self.write_config(to_yaml(cfg) + "\n")
        r = self.run_weir("check", "-c", path)  # never connects to BIRD
        self.assertEqual(r.returncode, 0, r.stderr)
        self.weir = self.spawn(["ip", "netns", "exec", self.ns_a, WEIR_BIN, "run", "-c", path],
                               "weir", stop_timeout=40, expect_exit=0)
        self.weir.wait_log(r"running with \d+ worker")
        return self.weir

    # -- tests ----------------------------------------------------------------------------------

    def test_route_follows_backend_health(self):
        self.assertFalse(self.vip_at_router())  # disabled in BIRD's config
        # Started with every server failing: servers start "up" until their health checks say
        # otherwise, but nothing is announced before a server passed a probe.
        self.set_health(503)
        self.start_lb_weir()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            self.assertFalse(self.vip_at_router(), "announced before any server passed a probe")
            time.sleep(0.05)
        self.assertEqual(self.metric("weir_announced"), "0")
        t0 = time.monotonic()
        self.set_health(200)
        took = self.wait_vip(True, 10)
        print(f"\nservers healthy -> VIP announced at the router: {took:.2f}s")
        self.weir.wait_log(r"announce: vip_web enabled \(web: [12] of 2 healthy\)")
        self.assertEqual(self.metric("weir_announced"), "1")
        self.assertEqual(self.get().status, 200)

        # Every server fails its health check: withdrawn within 5 s.
        t0 = time.monotonic()
        self.set_health(503)
        took = self.wait_vip(False, 5)
        print(f"health failure -> VIP withdrawn at the router: {time.monotonic() - t0:.2f}s")
        self.weir.wait_log(r"announce: vip_web disabled \(web: 0 of 2 healthy, need 1\)")
        self.assertEqual(self.metric("weir_announced"), "0")

        # Healthy again: announced again.
        t0 = time.monotonic()
        self.set_health(200)
        self.wait_vip(True, 10)
        print(f"healthy again -> VIP announced again: {time.monotonic() - t0:.2f}s")
        self.assertEqual(self.metric("weir_announced"), "1")

    def test_sigterm_withdraws_before_weir_stops(self):
        self.start_lb_weir(limits={"drain_grace": "3s", "drain_timeout": "5s"})
        self.wait_vip(True, 10)
        t0 = time.monotonic()
        self.weir.send_signal(signal.SIGTERM)
        withdrawn = self.wait_vip(False, 5)
        # Still serving during the grace, with the route already gone.
        self.assertTrue(self.weir.alive())
        self.assertEqual(self.get().status, 200)
        self.assertIsNotNone(self.weir.wait(15), "weir did not exit")
        exited = time.monotonic() - t0
        print(f"\nSIGTERM -> VIP withdrawn at the router: {withdrawn:.2f}s; weir exited: "
              f"{exited:.2f}s (drain_grace 3s)")
        self.assertLess(withdrawn, 1.5)
        self.assertGreaterEqual(exited, 3.0)
        self.assertLess(withdrawn, exited)
        log = self.weir.stderr()
        self.assertIn("announce: withdrawing vip_web before draining", log)
        self.assertIn("announce: vip_web disabled (draining)", log)
        self.assertLess(log.index("announce: vip_web disabled (draining)"),
                        log.index("draining: /healthz answers 503"))
        self.assertEqual(self.weir.returncode(), 0)

    def test_binary_upgrade_keeps_the_route(self):
        # SIGUSR2: the old process does not withdraw, the new one (not probed yet) leaves BIRD
        # alone until its health checks pass: the router never loses the VIP.
        old = self.start_lb_weir()
        self.wait_vip(True, 10)
        old.send_signal(signal.SIGUSR2)
        text = old.wait_log(r"upgrade: the new process \(pid \d+\) is ready", timeout=30)
        new_pid = int(re.search(r"upgrade: the new process \(pid (\d+)\) is ready", text)[1])
        self.addCleanup(self.stop_pid, new_pid)
        t0 = time.monotonic()
        while old.alive() or time.monotonic() - t0 < 2.0:
            self.assertTrue(self.vip_at_router(), "VIP withdrawn during the upgrade")
            self.assertLess(time.monotonic() - t0, 20, "old process still running")
            time.sleep(0.02)
        self.assertEqual(old.returncode(), 0)
        self.assertNotIn("withdrawing", old.stderr())
        self.assertEqual(self.get().status, 200)
        self.assertEqual(self.metric("weir_announced"), "1")  # the new process's

    def stop_pid(self, pid: int):
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
        try:
            wait_until(lambda: not pid_alive(pid), 15, what=f"pid {pid} to stop")
        except AssertionError:
            os.kill(pid, signal.SIGKILL)
            raise

    def test_bird_gone_and_back(self):
        self.start_lb_weir()
        self.wait_vip(True, 10)
        self.lb_bird.send_signal(signal.SIGKILL)
        self.lb_bird.wait(5)
        self.weir.wait_log(r"announce: BIRD at \S+ unreachable: BIRD closed the connection; "
                           r"retrying", timeout=5)
        # Serving is not affected; the gauge says what BIRD no longer confirms.
        for _ in range(5):
            self.assertEqual(self.get().status, 200)
        wait_until(lambda: self.metric("weir_announced") == "0", 5, what="weir_announced 0")
        self.wait_vip(False, 10)  # the router lost its peer
        time.sleep(1.0)  # a few failed reconnects: logged once
        self.assertEqual(len(self.weir.stderr().split("unreachable")) - 1, 1, self.weir.stderr())
        # BIRD back, with vip_web disabled as its config says: weir enables it again.
        t0 = time.monotonic()
        self.lb_bird = self.start_bird(self.ns_a, "lb")
        self.weir.wait_log(r"announce: BIRD at \S+ reachable again", timeout=10)
        self.wait_vip(True, 15)
        print(f"\nBIRD restarted -> VIP announced again: {time.monotonic() - t0:.2f}s")
        self.weir.wait_log(r"announce: vip_web enabled", count=2)
        self.assertEqual(self.metric("weir_announced"), "1")


if __name__ == "__main__":
    unittest.main()
