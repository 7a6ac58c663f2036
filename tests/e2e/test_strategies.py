"""Balancing strategies beyond round robin: least_connections, least_response_time, ip_hash and
consistent_hash (header, cookie, query keys; stability, minimal movement, agreement between
processes; bounded load)."""

import collections
import unittest

from weirtest import (HttpConn, WeirTestCase, build_request, free_port, http_conn_from, http_get,
                      lb_config, run_threads, wait_until)


class LeastConnectionsTest(WeirTestCase):
    def test_new_requests_go_to_the_idle_server(self):
        a = self.start_whoami("a")
        b = self.start_whoami("b")
        lb = self.start_lb([{"address": a.address, "name": "a"}, {"address": b.address, "name": "b"}],
                           backend_extra={"balance": "least_connections"})
        # One slow request in flight on whichever server the tie-break picks.
        slow = HttpConn(lb.port, timeout=15)
        self.addCleanup(slow.close)
        slow.send(build_request("GET", "/slow?delay=1500ms"))

        def busy_server():
            for s in lb.backends()["backends"][0]["servers"]:
                if s["active_requests"] == 1:
                    return s["name"]
            return None

        busy = wait_until(busy_server, 5, what="the slow request to be in flight")
        idle = "b" if busy == "a" else "a"
        # While it is in flight every new request goes to the other, idle server.
        with HttpConn(lb.port) as c:
            for i in range(15):
                self.assertWhoami(c.get(f"/fast{i}"), idle)
        r = slow.read_response()
        self.assertWhoami(r, busy)
        # Both idle again: the fast server is not preferred forever, both get traffic.
        seen = set()
        with HttpConn(lb.port) as c:
            for i in range(40):
                r = c.get(f"/after{i}")
                self.assertWhoami(r)
                seen.add(r.whoami_name())
        self.assertEqual(seen, {"a", "b"})

    def test_held_requests_spread_over_servers(self):
        a = self.start_whoami("a")
        b = self.start_whoami("b")
        c3 = self.start_whoami("c")
        lb = self.start_lb([{"address": w.address, "name": w.name} for w in (a, b, c3)],
                           backend_extra={"balance": "least_connections"})
        # Three slow requests held at once land on three different servers.
        conns = []
        for i in range(3):
            c = HttpConn(lb.port, timeout=15)
            self.addCleanup(c.close)
            c.send(build_request("GET", f"/hold{i}?delay=1500ms"))
            conns.append(c)
            wait_until(lambda: sum(s["active_requests"] for s in lb.backends()["backends"][0]["servers"]) == i + 1,
                       5, what=f"{i + 1} requests in flight")
        actives = {s["name"]: s["active_requests"] for s in lb.backends()["backends"][0]["servers"]}
        self.assertEqual(actives, {"a": 1, "b": 1, "c": 1})
        names = sorted(c.read_response().whoami_name() for c in conns)
        self.assertEqual(names, ["a", "b", "c"])


class LeastResponseTimeTest(WeirTestCase):
    def test_slow_server_gets_small_share(self):
        slow = self.start_whoami("slow", delay="50ms")
        fast = self.start_whoami("fast")
        lb = self.start_lb([{"address": slow.address, "name": "slow"},
                            {"address": fast.address, "name": "fast"}],
                           backend_extra={"balance": "least_response_time"})
        n_threads, per_thread = 4, 50

        def client(i):
            counts = collections.Counter()
            with HttpConn(lb.port) as c:
                for j in range(per_thread):
                    r = c.get(f"/t{i}/{j}")
                    self.assertWhoami(r)
                    counts[r.whoami_name()] += 1
            return counts

        total = collections.Counter()
        for counts in run_threads(client, n_threads, timeout=50):
            total.update(counts)
        n = n_threads * per_thread
        print(f"\nleast_response_time over {n}: {dict(total)}")
        self.assertEqual(total["slow"] + total["fast"], n)
        self.assertLess(total["slow"], n * 0.25)
        # The admin API agrees, and weir keeps serving afterwards.
        self.assertEqual(lb.server("web", "slow")["requests_total"], total["slow"])
        self.assertWhoami(http_get(lb.port, "/still"))


class IpHashTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.ws = [self.start_whoami(n) for n in ("a", "b", "c")]
        self.lb = self.start_lb([{"address": w.address, "name": w.name} for w in self.ws],
                                backend_extra={"balance": "ip_hash"})

    def names_from(self, ip, n, per_conn=10):
        out = []
        while len(out) < n:
            with http_conn_from(self.lb.port, ip) as c:
                for _ in range(min(per_conn, n - len(out))):
                    r = c.get(f"/ip{len(out)}")
                    self.assertWhoami(r)
                    out.append(r.whoami_name())
        return out

    def test_same_client_ip_keeps_its_server_across_1000_requests(self):
        names = self.names_from("127.0.0.5", 1000, per_conn=20)
        self.assertEqual(len(names), 1000)
        self.assertEqual(len(set(names)), 1, collections.Counter(names))
        # New connections each time (different source ports) do not change it.
        for _ in range(10):
            with http_conn_from(self.lb.port, "127.0.0.5") as c:
                self.assertWhoami(c.get("/again"), names[0])

    def test_many_client_ips_spread_and_each_is_stable(self):
        mapping = {}
        for n in range(10, 70):
            ip = f"127.0.0.{n}"
            got = self.names_from(ip, 4, per_conn=2)
            self.assertEqual(len(set(got)), 1, f"{ip} moved between servers: {got}")
            mapping[ip] = got[0]
        counts = collections.Counter(mapping.values())
        print(f"\nip_hash 60 client IPs over 3 servers: {dict(counts)}")
        self.assertEqual(set(counts), {"a", "b", "c"})
        for name in ("a", "b", "c"):
            self.assertGreaterEqual(counts[name], 6, counts)
        # Asked again later, in another order, every IP still lands on the same server.
        for ip in sorted(mapping, reverse=True):
            self.assertEqual(self.names_from(ip, 1)[0], mapping[ip], ip)


class ConsistentHashTest(WeirTestCase):
    def start_servers(self, n):
        return [self.start_whoami(f"s{i}") for i in range(n)]

    def hash_lb(self, servers, hash_key, extra=None, port=None):
        be = {"balance": "consistent_hash", "hash_key": hash_key}
        be.update(extra or {})
        cfg = lb_config(port or free_port(), [{"address": w.address, "name": w.name} for w in servers],
                        admin_port=free_port(), backend_extra=be)
        return self.start_weir(cfg, filename=f"weir-{cfg['listeners'][0]['listen'].rsplit(':', 1)[1]}.yaml")

    def map_keys(self, port, keys, request):
        """{key: server name} with request(conn, key) -> Response, over one connection."""
        out = {}
        with HttpConn(port) as c:
            for k in keys:
                r = request(c, k)
                self.assertWhoami(r)
                out[k] = r.whoami_name()
        return out

    @staticmethod
    def by_header(c, k):
        return c.get(f"/p/{k[-3:]}", headers={"X-User": k})

    def test_header_key_stable_and_server_leaving_moves_only_its_keys(self):
        servers = self.start_servers(4)
        lb = self.hash_lb(servers, "header:X-User",
                          {"health_check": {"type": "tcp", "interval": "200ms", "timeout": "200ms",
                                            "rise": 1, "fall": 1}})
        keys = [f"user-{i}" for i in range(300)]
        first = self.map_keys(lb.port, keys, self.by_header)
        counts = collections.Counter(first.values())
        print(f"\nconsistent_hash 300 keys over 4 servers: {dict(counts)}")
        self.assertEqual(set(counts), {"s0", "s1", "s2", "s3"})
        # Stable: the same keys in another order and on other paths map the same way.
        again = self.map_keys(lb.port, list(reversed(keys)),
                              lambda c, k: c.get("/elsewhere?x=1", headers={"X-User": k}))
        self.assertEqual(again, first)
        # s2 leaves (its process is killed; the tcp check marks it down).
        victim = servers[2]
        victim.proc.stop()
        wait_until(lambda: lb.server("web", "s2")["healthy"] is False, 10, what="s2 marked down")
        after = self.map_keys(lb.port, keys, self.by_header)
        moved = [k for k in keys if after[k] != first[k]]
        on_victim = [k for k in keys if first[k] == "s2"]
        self.assertEqual(sorted(moved), sorted(on_victim),
                         "keys on surviving servers moved, or the dead server's keys did not")
        self.assertNotIn("s2", after.values())
        self.assertLessEqual(len(moved), len(keys) / 4 + 0.1 * len(keys))
        # The dead server's keys are spread over the survivors, not dumped on one.
        self.assertGreaterEqual(len({after[k] for k in on_victim}), 2)

    def test_cookie_key(self):
        servers = self.start_servers(3)
        lb = self.hash_lb(servers, "cookie:sid")
        keys = [f"c{i}x" for i in range(60)]
        req = lambda c, k: c.get("/", headers={"Cookie": f"theme=dark; sid={k}; lang=en"})  # noqa: E731
        first = self.map_keys(lb.port, keys, req)
        self.assertGreaterEqual(len(set(first.values())), 2, first)
        # The other cookies and the path do not matter; only sid does.
        again = self.map_keys(lb.port, keys, lambda c, k: c.get(f"/other/{k}", headers={"Cookie": f"sid={k}"}))
        self.assertEqual(again, first)

    def test_query_key(self):
        servers = self.start_servers(3)
        lb = self.hash_lb(servers, "query:uid")
        keys = [f"q{i}" for i in range(60)]
        first = self.map_keys(lb.port, keys, lambda c, k: c.get(f"/a?x=1&uid={k}&y=2"))
        self.assertGreaterEqual(len(set(first.values())), 2, first)
        again = self.map_keys(lb.port, keys, lambda c, k: c.get(f"/b/c?uid={k}"))
        self.assertEqual(again, first)

    def test_path_key(self):
        servers = self.start_servers(3)
        lb = self.hash_lb(servers, "path")
        keys = [f"/doc/{i}" for i in range(60)]
        first = self.map_keys(lb.port, keys, lambda c, k: c.get(k))
        self.assertGreaterEqual(len(set(first.values())), 2, first)
        again = self.map_keys(lb.port, list(reversed(keys)), lambda c, k: c.get(k, headers={"X-User": "z"}))
        self.assertEqual(again, first)

    def test_two_processes_agree(self):
        servers = self.start_servers(4)
        lb1 = self.hash_lb(servers, "header:X-User")
        lb2 = self.hash_lb(servers, "header:X-User")
        keys = [f"user-{i}" for i in range(150)]
        m1 = self.map_keys(lb1.port, keys, self.by_header)
        m2 = self.map_keys(lb2.port, keys, self.by_header)
        self.assertEqual(m1, m2)
        self.assertGreaterEqual(len(set(m1.values())), 3)

    def test_multiple_workers_agree(self):
        servers = self.start_servers(3)
        cfg = lb_config(free_port(), [{"address": w.address, "name": w.name} for w in servers],
                        admin_port=free_port(), workers=2,
                        backend_extra={"balance": "consistent_hash", "hash_key": "header:X-User"})
        lb = self.start_weir(cfg)
        keys = [f"k{i}" for i in range(40)]
        # A new connection per request: connections are spread over both workers.
        for k in keys:
            names = {http_get(lb.port, "/", headers={"X-User": k}).whoami_name() for _ in range(4)}
            self.assertEqual(len(names), 1, f"key {k} answered by {names}")

    def in_flight_one_after_another(self, lb, n, target, headers):
        """Sends n requests on n connections, each once the ones before it are in flight (weir's
        in-flight count, from the admin API, says so); returns the whoami names that answer."""
        conns = []
        for i in range(n):
            c = HttpConn(lb.port, timeout=20)
            self.addCleanup(c.close)
            c.send(build_request("GET", target(i), headers=headers))
            conns.append(c)
            wait_until(lambda: self.in_flight(lb) == i + 1, 10, what=f"{i + 1} requests in flight")
        names = []
        for c in conns:
            r = c.read_response()
            self.assertWhoami(r)
            names.append(r.whoami_name())
        return names

    @staticmethod
    def in_flight(lb) -> int:
        return sum(s["active_requests"] for b in lb.backends()["backends"] for s in b["servers"])

    def test_bounded_load_spills_a_hot_key(self):
        servers = self.start_servers(4)
        lb = self.hash_lb(servers, "header:X-User", {"hash_balance_factor": "1.25"})
        home = http_get(lb.port, "/", headers={"X-User": "hot"}).whoami_name()
        # The requests arrive one after the other while the others are in flight.
        names = self.in_flight_one_after_another(lb, 8, lambda i: f"/hot{i}?delay=3s", {"X-User": "hot"})
        counts = collections.Counter(names)
        print(f"\nhot key with hash_balance_factor 1.25: {dict(counts)}")
        self.assertIn(home, counts)
        self.assertGreaterEqual(len(counts), 2, counts)
        self.assertLessEqual(counts[home], 4, counts)
        # Idle again: the key goes home.
        self.assertEqual(http_get(lb.port, "/", headers={"X-User": "hot"}).whoami_name(), home)

    def test_without_bounded_load_hot_key_stays_home(self):
        servers = self.start_servers(3)
        lb = self.hash_lb(servers, "header:X-User")
        home = http_get(lb.port, "/", headers={"X-User": "hot"}).whoami_name()
        names = self.in_flight_one_after_another(lb, 6, lambda i: f"/hot{i}?delay=2s", {"X-User": "hot"})
        self.assertEqual(set(names), {home})


if __name__ == "__main__":
    unittest.main()
