"""A floating address moved by VRRP (fleet.md): two weir instances, each with keepalived, in
network namespaces this test creates and removes (veth pairs on a bridge; documentation
addresses, 192.0.2.0/24, only inside them). A client namespace loops requests to the virtual
address; SIGTERM on the master's weir turns its admin /healthz to 503 while it keeps serving for
limits.drain_grace, keepalived's track_script sees it and faults the instance, the backup takes
the address (gratuitous ARP), and the requests reach the backup's weir. The test reports the gap
(last answer through A to first through B) and the failed requests: the gap must stay under 3 s
and every failure must fall inside it.

Needs root (network namespaces), keepalived, curl (the track script) and iproute2.

    A (weirvrrp-PID-a)  192.0.2.1   keepalived prio 150, weir on 192.0.2.10:8080 (freebind),
                                    whoami "a" on 127.0.0.1:9000, admin 127.0.0.1:9901
    B (weirvrrp-PID-b)  192.0.2.2   the same with prio 100 and whoami "b"
    C (weirvrrp-PID-c)  192.0.2.100 the client (vrrp_client.py)
    S (weirvrrp-PID-s)  the bridge joining the three veth pairs
"""

import os
import shutil
import signal
import subprocess
import time
import unittest

from weirtest import HERE, WEIR_BIN, WeirTestCase, lb_config, require, wait_until

IP = shutil.which("ip") or "/usr/sbin/ip"
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
CURL = shutil.which("curl") or "/usr/bin/curl"
PYTHON = "/usr/bin/python3"

VIP = "192.0.2.10"
PORT = 8080
ADDRS = {"a": "192.0.2.1", "b": "192.0.2.2", "c": "192.0.2.100"}
PRIORITY = {"a": 150, "b": 100}
WHOAMI_PORT = 9000
ADMIN_PORT = 9901
DRAIN_GRACE = 3.0
GAP_TARGET_MS = 3000

KEEPALIVED_CONF = """\
global_defs {{
    router_id weir_{me}
    script_user root
    enable_script_security
}}

# weir's admin /healthz: 200 while serving, 503 from SIGTERM on (limits.drain_grace).
vrrp_script weir_healthz {{
    script "{curl} -fsS -o /dev/null -m 1 http://127.0.0.1:{admin}/healthz"
    interval 1
    timeout 2
    fall 1
    rise 1
}}

vrrp_instance web {{
    state {state}
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    unicast_src_ip {src}
    unicast_peer {{
        {peer}
    }}
    virtual_ipaddress {{
        {vip}/24 dev eth0
    }}
    track_script {{
        weir_healthz
    }}
}}
"""


def ip(*args, check=True):
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=15, check=check)


def parse_results(path: str):
    """[(t, ok, name or reason)] from the client's lines."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # being written
                t, status, rest = (line.rstrip("\n").split(" ", 2) + [""])[:3]
                out.append((float(t), status == "ok", rest))
    except OSError:
        pass
    return out


class VrrpFailoverTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        require(os.geteuid() == 0, "needs root (network namespaces, keepalived)", self)
        for tool in (IP, KEEPALIVED, CURL, PYTHON):
            require(os.access(tool, os.X_OK), f"{tool} not installed (scripts/deps.sh)", self)

    # -- the network ----------------------------------------------------------------------------

    def make_network(self) -> dict:
        pid = os.getpid()
        ns = {k: f"weirvrrp-{pid}-{k}" for k in ("a", "b", "c", "s")}
        # Registered before any process is spawned, so it runs after they are all stopped.
        self.addCleanup(self.remove_network, list(ns.values()))
        for n in ns.values():
            r = ip("netns", "add", n, check=False)
            require(r.returncode == 0, f"cannot create a network namespace: {r.stderr.strip()}", self)
            ip("-n", n, "link", "set", "lo", "up")
        s = ns["s"]
        ip("-n", s, "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0")
        ip("-n", s, "link", "set", "br0", "up")
        for k, addr in ADDRS.items():
            ip("-n", s, "link", "add", f"p{k}", "type", "veth", "peer", "name", "eth0", "netns", ns[k])
            ip("-n", s, "link", "set", f"p{k}", "master", "br0", "up")
            ip("-n", ns[k], "addr", "add", f"{addr}/24", "dev", "eth0")
            ip("-n", ns[k], "link", "set", "eth0", "up")
        return ns

    def remove_network(self, names):
        """Kills whatever still runs in the namespaces (nothing, normally: every process was
        spawned through the harness and stopped before this), then deletes them (and with them
        their veths and the bridge)."""
        for n in names:
            r = ip("netns", "pids", n, check=False)
            for p in r.stdout.split():
                try:
                    os.kill(int(p), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for n in names:
            ip("netns", "del", n, check=False)
        left = ip("netns", "list", check=False).stdout
        for n in names:
            if n in left:
                raise AssertionError(f"network namespace {n} still there after deletion")

    def holds_vip(self, ns: str) -> bool:
        return f"inet {VIP}/" in ip("-n", ns, "-4", "addr", "show", "dev", "eth0").stdout

    def in_ns(self, ns: str, args, name: str, expect_exit=..., stop_timeout: float = 10.0):
        return self.spawn([IP, "netns", "exec", ns, *args], name, expect_exit=expect_exit,
                          stop_timeout=stop_timeout)

    # -- one side: whoami, weir, keepalived -----------------------------------------------------

    def start_side(self, k: str, ns: str):
        who = self.in_ns(ns, [WEIR_BIN, "whoami", "--listen", f"127.0.0.1:{WHOAMI_PORT}",
                              "--name", k], f"whoami-{k}", expect_exit=0)
        cfg = lb_config(PORT, [WHOAMI_PORT], admin_port=ADMIN_PORT,
                        listener_extra={"freebind": True},
                        backend_extra={"health_check": {"type": "http", "path": "/healthz",
                                                        "interval": "500ms", "timeout": "300ms",
                                                        "rise": 1, "fall": 2}},
                        top_extra={"limits": {"drain_grace": f"{int(DRAIN_GRACE)}s",
                                              "drain_timeout": "5s"}})
        cfg["listeners"][0]["listen"] = f"{VIP}:{PORT}"
        path = self.write_config(cfg, f"weir-{k}.yaml")
        weir = self.in_ns(ns, [WEIR_BIN, "run", "-c", path], f"weir-{k}", expect_exit=0,
                          stop_timeout=20)
        who.wait_log(rf"whoami {k} listening")
        weir.wait_log(r"running with \d+ worker")
        weir.wait_log(rf"listener web on {VIP}:{PORT}")
        return who, weir

    def start_keepalived(self, k: str, ns: str):
        peer = ADDRS["b" if k == "a" else "a"]
        conf = os.path.join(self.tmp, f"keepalived-{k}.conf")
        with open(conf, "w") as f:
            f.write(KEEPALIVED_CONF.format(me=k, curl=CURL, admin=ADMIN_PORT,
                                           state="MASTER" if k == "a" else "BACKUP",
                                           priority=PRIORITY[k], src=ADDRS[k], peer=peer, vip=VIP))
        os.chmod(conf, 0o600)
        args = [KEEPALIVED, "--dont-fork", "--log-console", "--log-detail", "--no-syslog",
                "--vrrp", "--dont-respawn", "-f", conf,
                "-p", os.path.join(self.tmp, f"keepalived-{k}.pid"),
                "-r", os.path.join(self.tmp, f"keepalived-{k}-vrrp.pid")]
        return self.in_ns(ns, args, f"keepalived-{k}", expect_exit=0)

    # -- the test -------------------------------------------------------------------------------

    def test_sigterm_on_master_moves_vip_and_traffic(self):
        t_start = time.monotonic()
        ns = self.make_network()
        _, weir_a = self.start_side("a", ns["a"])
        _, weir_b = self.start_side("b", ns["b"])

        ka = self.start_keepalived("a", ns["a"])
        wait_until(lambda: self.holds_vip(ns["a"]) or not ka.alive(), 15, 0.1, "A to hold the VIP")
        self.assertTrue(ka.alive(), ka.stderr()[-3000:])
        kb = self.start_keepalived("b", ns["b"])
        kb.wait_log(r"Entering BACKUP STATE", timeout=15)
        self.assertFalse(self.holds_vip(ns["b"]))

        out = os.path.join(self.tmp, "client.log")
        stop = os.path.join(self.tmp, "client.stop")
        client = self.in_ns(ns["c"], [PYTHON, os.path.join(HERE, "vrrp_client.py"), VIP, str(PORT),
                                      out, stop, "90"], "client", expect_exit=0)
        def stop_client():
            open(stop, "w").close()
            client.wait(5)

        self.addCleanup(stop_client)

        def served_by(k, n):
            return sum(1 for _, ok, who in parse_results(out) if ok and who == k) >= n

        wait_until(lambda: served_by("a", 30) or not client.alive(), 20, 0.1,
                   "30 answers through A")
        self.assertTrue(client.alive(), client.stderr()[-2000:])

        t_term = time.monotonic()
        weir_a.send_signal(signal.SIGTERM)
        # B answers, and keeps answering past the end of A's drain_grace (A gone for good).
        wait_until(lambda: served_by("b", 1), 15, 0.05, "a first answer through B")
        self.assertEqual(weir_a.wait(20), 0, weir_a.stderr()[-3000:])
        t_a_gone = time.monotonic()
        wait_until(lambda: any(ok and who == "b" and t > t_a_gone + 1.0
                               for t, ok, who in parse_results(out)), 15, 0.1,
                   "answers through B after A exited")
        open(stop, "w").close()
        self.assertEqual(client.wait(10), 0, client.stderr()[-2000:])

        results = parse_results(out)
        before = [r for r in results if r[0] < t_term]
        self.assertTrue(before and all(ok and who == "a" for _, ok, who in before),
                        [r for r in before if not (r[1] and r[2] == "a")][:5])
        last_a = max(t for t, ok, who in results if ok and who == "a")
        first_b = min(t for t, ok, who in results if ok and who == "b")
        fails = [r for r in results if not r[1]]
        outside = [r for r in fails if not (last_a < r[0] < first_b)]
        gap_ms = (first_b - last_a) * 1000
        after = [r for r in results if r[0] >= first_b]
        print(f"\nVRRP failover: gap {gap_ms:.0f} ms (last answer via A -> first via B), "
              f"{len(fails)} failed request(s) of {len(results)}, "
              f"{len(outside)} outside the gap; first answer via B "
              f"{(first_b - t_term) * 1000:.0f} ms after SIGTERM; "
              f"{len(after)} requests after it, all via B; total {time.monotonic() - t_start:.1f} s")
        for r in fails[:10]:
            print(f"  failed at +{(r[0] - t_term) * 1000:.0f} ms: {r[2]}")
        self.assertLess(last_a, first_b, "A answered after B had taken over")
        self.assertLess(gap_ms, GAP_TARGET_MS)
        self.assertEqual(outside, [], "failures outside the gap")
        self.assertTrue(all(ok and who == "b" for _, ok, who in after),
                        [r for r in after if not (r[1] and r[2] == "b")][:5])

        # Who holds what now; what the daemons said.
        self.assertTrue(self.holds_vip(ns["b"]))
        self.assertFalse(self.holds_vip(ns["a"]))
        ka.wait_log(r"Entering FAULT STATE")
        kb.wait_log(r"Entering MASTER STATE")
        weir_a.wait_log(r"draining: /healthz answers 503; still serving for drain_grace")
        self.assertTrue(weir_b.alive())


if __name__ == "__main__":
    unittest.main()
