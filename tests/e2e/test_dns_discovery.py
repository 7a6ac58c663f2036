"""DNS service discovery against a real DNS server (dnsmasq, started by each test on a loopback
port): `resolve:` follows the A records (changes seen within 2 intervals, servers named IP:PORT
in the admin API), a failed or empty answer keeps the last good set, `discovery.srv` serves only
the lowest SRV priority with servers up and fails over to the next, a server that disappears
finishes its request in flight, a server that appears ramps up with slow_start, and weir asks
the `resolvers:` it is given, not /etc/resolv.conf. The backends are whoami servers on loopback
aliases (127.0.0.2, .3, .4) sharing one port."""

import collections
import grp
import os
import pwd
import shutil
import signal
import socket
import struct
import threading
import time
import unittest

from weirtest import (HOST, WEIR_BIN, HttpConn, WeirTestCase, admin_backends, free_port, lb_config,
                      port_accepts, require, wait_until)

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
INTERVAL = 1.0  # seconds: `resolve: 1s`, `interval: 1s`
# "Seen within 2 intervals" (a change is looked up within one, then the snapshot is rebuilt).
WITHIN = 2 * INTERVAL
IPS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
FAST_CHECK = {"type": "http", "path": "/healthz", "interval": "200ms", "timeout": "200ms",
              "rise": 1, "fall": 2}


def udp_and_tcp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((HOST, port))
            return port
        except OSError:
            continue
    raise AssertionError("no free UDP+TCP port")


def dns_answers(port: int, name: str = "ready.test") -> bool:
    """Whether a DNS server answers (anything) on 127.0.0.1:port."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        try:
            s.sendto(query, (HOST, port))
            data = s.recv(512)
            return len(data) >= 12 and data[:2] == b"\x12\x34"
        except OSError:
            return False


class Dns:
    """dnsmasq on 127.0.0.1:port, UDP and TCP: A records from a hosts file (re-read on SIGHUP)
    and SRV records from --srv-host arguments (a restart changes them)."""

    def __init__(self, tc: WeirTestCase, name: str = "dnsmasq"):
        self.tc, self.name = tc, name
        self.port = udp_and_tcp_port()
        self.hosts = os.path.join(tc.tmp, f"{name}.hosts")
        self.proc = None

    def set_hosts(self, records: dict, reload: bool = True):
        """records: name -> list of IPs. Written atomically; SIGHUP makes dnsmasq read it."""
        tmp = self.hosts + ".tmp"
        with open(tmp, "w") as f:
            for name, ips in records.items():
                for ip in ips:
                    f.write(f"{ip} {name}\n")
        os.replace(tmp, self.hosts)
        if reload and self.proc is not None and self.proc.alive():
            before = self.proc.stderr().count(f"read {self.hosts}")
            self.proc.send_signal(signal.SIGHUP)
            self.proc.wait_log(f"read {self.hosts}", before + 1, timeout=5)

    def start(self, srv=()):
        """srv: (name, target, port, priority, weight) tuples."""
        require(os.access(DNSMASQ, os.X_OK), "dnsmasq (Debian dnsmasq-base) is not installed", self.tc)
        args = [DNSMASQ, "--keep-in-foreground", f"--port={self.port}", f"--listen-address={HOST}",
                "--bind-interfaces", "--no-resolv", "--no-hosts", "--no-negcache", f"--addn-hosts={self.hosts}",
                "--pid-file=", "--log-facility=-", "--cache-size=0",
                f"--user={pwd.getpwuid(os.getuid()).pw_name}", f"--group={grp.getgrgid(os.getgid()).gr_name}"]
        for name, target, port, prio, weight in srv:
            args.append(f"--srv-host={name},{target},{port},{prio},{weight}")
        self.proc = self.tc.spawn(args, self.name)
        wait_until(lambda: dns_answers(self.port) or not self.proc.alive(), 10, 0.05, "dnsmasq answering")
        if not self.proc.alive():
            raise AssertionError(f"dnsmasq exited:\n{self.proc.stderr()[-2000:]}")
        return self

    def stop(self):
        self.proc.stop()
        self.proc = None

    def restart(self, srv=()):
        self.stop()
        self.start(srv)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


class DnsDiscoveryTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        # One port, three loopback addresses: what an A record change moves between.
        self.port = free_port()
        self.backends = {}
        for ip in IPS:
            self.backends[ip] = self.start_whoami_on(ip, self.port, "s" + ip.rsplit(".", 1)[1])

    def start_whoami_on(self, ip: str, port: int, name: str):
        p = self.spawn([WEIR_BIN, "whoami", "--listen", f"{ip}:{port}", "--name", name], f"whoami-{name}")
        wait_until(lambda: port_accepts(port, ip) or not p.alive(), 10, 0.02, f"whoami on {ip}:{port}")
        self.assertTrue(p.alive(), p.stderr()[-2000:])
        return p

    def set_health(self, ip: str, status: int):
        with HttpConn(self.port, host=ip) as c:
            r = c.request("POST", "/healthz", None, str(status).encode(), f"{ip}:{self.port}")
            self.assertEqual(r.status, 200)

    def lb(self, dns: Dns, backend: dict, **top):
        cfg = lb_config(free_port(), [], admin_port=free_port(), backends=[dict(name="web", **backend)],
                        top_extra={"resolvers": [dns.address], **top})
        return self.start_weir(cfg)

    def resolve_backend(self, **extra):
        b = {"servers": [{"address": f"app.test:{self.port}", "resolve": f"{int(INTERVAL)}s"}]}
        b.update(extra)
        return b

    def names(self, lb, n: int) -> collections.Counter:
        """Whoami names of n requests on one keep-alive connection (every answer must be 200)."""
        out = collections.Counter()
        with HttpConn(lb.port) as c:
            for i in range(n):
                r = c.get(f"/n{i}")
                self.assertEqual(r.status, 200, r.text[:300])
                out[r.whoami_name()] += 1
        return out

    def answers(self, lb, n: int) -> set:
        """Whoami names of n requests, each of which must be answered 200: while the last server
        of a priority goes down and the snapshot is rebuilt with the next one serving, requests
        go to the next priority's servers (no gap)."""
        out = set()
        with HttpConn(lb.port) as c:
            for i in range(n):
                r = c.get(f"/a{i}")
                self.assertEqual(r.status, 200, r.text[:300])
                out.add(r.whoami_name())
        return out

    def servers(self, lb, backend: str = "web") -> set:
        for b in admin_backends(lb.admin_port)["backends"]:
            if b["name"] == backend:
                return {s["name"] for s in b["servers"]}
        raise AssertionError(f"no backend {backend}")

    def addr(self, ip: str) -> str:
        return f"{ip}:{self.port}"

    def wait_servers(self, lb, ips, since: float, backend: str = "web"):
        want = {self.addr(ip) for ip in ips}
        wait_until(lambda: self.servers(lb, backend) == want, WITHIN + 2, 0.05, f"servers {sorted(want)}")
        elapsed = time.monotonic() - since
        self.assertLessEqual(elapsed, WITHIN, f"change seen after {elapsed:.2f}s, more than 2 intervals")

    # ------------------------------------------------------------------------------------------

    def test_resolve_follows_a_records_and_names_servers_ip_port(self):
        dns = Dns(self)
        dns.set_hosts({"app.test": IPS[:2]}, reload=False)
        dns.start()
        lb = self.lb(dns, self.resolve_backend())
        self.assertEqual(self.servers(lb), {self.addr(IPS[0]), self.addr(IPS[1])})
        self.assertEqual(set(self.names(lb, 10)), {"s2", "s3"})
        entry = admin_backends(lb.admin_port)["backends"][0]["servers"][0]
        self.assertEqual(entry["address"], f"app.test:{self.port}")
        # A third address, then one fewer: each seen within 2 intervals.
        t0 = time.monotonic()
        dns.set_hosts({"app.test": IPS})
        self.wait_servers(lb, IPS, t0)
        self.assertEqual(set(self.names(lb, 12)), {"s2", "s3", "s4"})
        t0 = time.monotonic()
        dns.set_hosts({"app.test": [IPS[0], IPS[2]]})
        self.wait_servers(lb, [IPS[0], IPS[2]], t0)
        self.assertEqual(set(self.names(lb, 12)), {"s2", "s4"})
        log = lb.proc.stderr()
        self.assertIn(f"dns: A/AAAA app.test: {IPS[0]}, {IPS[2]}", log)

    def test_failed_or_empty_answer_keeps_the_last_good_set(self):
        dns = Dns(self)
        dns.set_hosts({"app.test": IPS[:2]}, reload=False)
        dns.start()
        lb = self.lb(dns, self.resolve_backend())
        # The DNS server goes away: the servers stay, one log line for the whole outage.
        dns.stop()
        lb.proc.wait_log(r"dns: A/AAAA app.test: .*; keeping the last 2 addresses", timeout=10)
        deadline = time.monotonic() + 3 * INTERVAL
        while time.monotonic() < deadline:
            self.assertEqual(set(self.names(lb, 4)), {"s2", "s3"})
        self.assertEqual(lb.proc.stderr().count("keeping the last"), 1)
        self.assertEqual(self.servers(lb), {self.addr(IPS[0]), self.addr(IPS[1])})
        # Back, with another set: seen again.
        dns.set_hosts({"app.test": [IPS[1], IPS[2]]}, reload=False)
        t0 = time.monotonic()
        dns.start()
        self.wait_servers(lb, IPS[1:], t0)
        lb.proc.wait_log(r"dns: A/AAAA app.test answers again")
        # A name the server no longer knows (an empty/negative answer): the last set stays.
        dns.set_hosts({"other.test": [IPS[0]]})
        lb.proc.wait_log(r"keeping the last", 2, timeout=10)
        time.sleep(INTERVAL)
        self.assertEqual(self.servers(lb), {self.addr(IPS[1]), self.addr(IPS[2])})
        self.assertEqual(set(self.names(lb, 6)), {"s3", "s4"})

    def test_srv_lowest_priority_serves_then_fails_over(self):
        dns = Dns(self)
        dns.set_hosts({"a.test": [IPS[0]], "b.test": [IPS[1]], "c.test": [IPS[2]]}, reload=False)
        srv = "_http._tcp.app.test"
        dns.start([(srv, "a.test", self.port, 0, 10), (srv, "b.test", self.port, 0, 30),
                   (srv, "c.test", self.port, 1, 10)])
        lb = self.lb(dns, {"discovery": {"srv": srv, "interval": f"{int(INTERVAL)}s"},
                           "health_check": FAST_CHECK})
        info = {s["name"]: s for s in admin_backends(lb.admin_port)["backends"][0]["servers"]}
        self.assertEqual(set(info), {self.addr(ip) for ip in IPS})
        self.assertEqual(info[self.addr(IPS[0])]["weight"], 10)
        self.assertEqual(info[self.addr(IPS[1])]["weight"], 30)
        self.assertEqual(info[self.addr(IPS[2])]["weight"], 0)  # priority 1: standby
        self.assertEqual(info[self.addr(IPS[0])]["address"], f"a.test:{self.port}")
        got = self.names(lb, 40)
        self.assertEqual(got["s4"], 0, got)
        self.assertGreater(got["s3"], 2 * got["s2"], got)  # weights 30:10
        self.assertGreater(got["s2"], 0, got)
        # Priority 0 fails its health checks: priority 1 takes the traffic.
        self.set_health(IPS[0], 503)
        self.set_health(IPS[1], 503)
        wait_until(lambda: self.answers(lb, 4) == {"s4"}, 10, 0.1, "traffic on priority 1")
        lb.proc.wait_log(r"backend web: SRV priority 1 now serves")
        self.assertEqual(set(self.names(lb, 8)), {"s4"})
        # One of priority 0 back: it serves again, alone.
        self.set_health(IPS[0], 200)
        wait_until(lambda: self.answers(lb, 4) == {"s2"}, 10, 0.1, "traffic back on priority 0")
        self.assertEqual(set(self.names(lb, 8)), {"s2"})
        self.set_health(IPS[1], 200)
        # New SRV records (dnsmasq restarted on the same port): seen within 2 intervals.
        t0 = time.monotonic()
        dns.restart([(srv, "c.test", self.port, 0, 5)])
        self.wait_servers(lb, [IPS[2]], t0)
        wait_until(lambda: set(self.names(lb, 4)) == {"s4"}, 10, 0.1, "traffic on the new record")

    def test_removed_server_finishes_its_request_in_flight(self):
        dns = Dns(self)
        dns.set_hosts({"app.test": IPS[:2]}, reload=False)
        dns.start()
        lb = self.lb(dns, self.resolve_backend())
        results = {}

        def slow(i):
            with HttpConn(lb.port, timeout=20) as c:
                r = c.get(f"/slow{i}?delay=4s")
                results[i] = (r.status, r.whoami_name(), time.monotonic())

        # Round robin: the two requests go to the two servers.
        threads = [threading.Thread(target=slow, args=(i,), daemon=True) for i in range(2)]
        for t in threads:
            t.start()
        wait_until(lambda: sum(s["active_requests"] for s in admin_backends(lb.admin_port)["backends"][0]["servers"]) == 2,
                   5, 0.02, "two requests in flight")
        t0 = time.monotonic()
        dns.set_hosts({"app.test": [IPS[0]]})
        self.wait_servers(lb, [IPS[0]], t0)
        removed_at = time.monotonic()
        for t in threads:
            t.join(20)
        self.assertEqual(sorted((s, n) for s, n, _ in results.values()), [(200, "s2"), (200, "s3")])
        done_s3 = [at for _, n, at in results.values() if n == "s3"][0]
        self.assertGreater(done_s3, removed_at)  # it finished after its server was gone
        self.assertEqual(set(self.names(lb, 6)), {"s2"})

    def test_server_that_appears_gets_slow_start(self):
        dns = Dns(self)
        dns.set_hosts({"app.test": IPS[:2]}, reload=False)
        dns.start()
        backend = self.resolve_backend(slow_start="60s")
        backend["servers"][0]["weight"] = 100
        lb = self.lb(dns, backend)
        # The first answer's servers take their full share at once.
        first = self.names(lb, 20)
        self.assertEqual((first["s2"], first["s3"]), (10, 10), first)
        t0 = time.monotonic()
        dns.set_hosts({"app.test": IPS})
        self.wait_servers(lb, IPS, t0)
        # Seconds into a 60 s ramp, the new server weighs a few % of the others' 100 each.
        got = self.names(lb, 60)
        self.assertLess(got["s4"], 10, got)
        self.assertGreater(got["s2"], 20, got)
        self.assertGreater(got["s3"], 20, got)

    def test_resolvers_are_the_ones_configured(self):
        one, two = Dns(self, "dns-one"), Dns(self, "dns-two")
        one.set_hosts({"app.test": [IPS[0]]}, reload=False)
        two.set_hosts({"app.test": [IPS[1]]}, reload=False)
        one.start()
        two.start()
        lb = self.lb(two, self.resolve_backend())
        lb.proc.wait_log(f"dns: resolvers {two.address}")
        self.assertEqual(self.servers(lb), {self.addr(IPS[1])})
        self.assertEqual(set(self.names(lb, 4)), {"s3"})
        # A reload to the other resolver: its answer replaces the set.
        cfg = lb_config(lb.port, [], admin_port=lb.admin_port,
                        backends=[dict(name="web", **self.resolve_backend())],
                        top_extra={"resolvers": [one.address]})
        t0 = time.monotonic()
        self.assertTrue(lb.reload(cfg))
        self.wait_servers(lb, [IPS[0]], t0)
        self.assertEqual(set(self.names(lb, 4)), {"s2"})

    def test_name_without_answer_at_start_starts_empty_then_fills(self):
        dns = Dns(self)
        dns.set_hosts({"other.test": [IPS[0]]}, reload=False)
        dns.start()
        lb = self.lb(dns, self.resolve_backend())
        log = lb.proc.wait_log(r"no servers from it until it answers")
        self.assertRegex(log, r"weir\.yaml:\d+:\d+: A/AAAA app\.test: ")
        self.assertEqual(self.servers(lb), set())
        with HttpConn(lb.port) as c:
            self.assertEqual(c.get("/").status, 503)
        t0 = time.monotonic()
        dns.set_hosts({"app.test": [IPS[2]]})
        self.wait_servers(lb, [IPS[2]], t0)
        self.assertEqual(set(self.names(lb, 4)), {"s4"})
        # A reload adding a `resolve:` server: looked up before the new config serves.
        backend = self.resolve_backend()
        backend["servers"].append({"address": f"more.test:{self.port}", "resolve": "5s"})
        dns.set_hosts({"app.test": [IPS[2]], "more.test": [IPS[0]]})
        cfg = lb_config(lb.port, [], admin_port=lb.admin_port, backends=[dict(name="web", **backend)],
                        top_extra={"resolvers": [dns.address]})
        self.assertTrue(lb.reload(cfg))
        self.assertEqual(self.servers(lb), {self.addr(IPS[2]), self.addr(IPS[0])})


if __name__ == "__main__":
    unittest.main()
