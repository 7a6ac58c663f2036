"""Sessions in a central store (fleet.md): `weir whoami --redis HOST:PORT` counts a client's
visits in Redis under a `whoami_session` cookie it sets on the first visit, so any instance
continues any session -- killing the one that served the previous visits does not reset the
count. Without --redis `/session` answers 501; with Redis down 503 (never a hang), and it works
again once Redis is back. Needs redis-server (scripts/deps.sh installs it)."""

import os
import re
import shutil
import signal
import time
import unittest

from weirtest import (HOST, WEIR_BIN, WeirTestCase, free_port, http_get, lb_config, require,
                      wait_port, wait_until)

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
FAST_CHECK = {"type": "http", "path": "/healthz", "interval": "300ms", "timeout": "1s",
              "rise": 1, "fall": 2}
COOKIE_RX = re.compile(r"^whoami_session=([0-9a-f]{32}); Path=/; HttpOnly; SameSite=Lax$")


class SessionsTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        require(os.access(REDIS, os.X_OK), "redis-server not installed (scripts/deps.sh)", self)

    # -- helpers --------------------------------------------------------------------------------

    def start_redis(self, port: int | None = None, unix: str | None = None):
        """redis-server on loopback (an ephemeral port unless given; or a unix socket only),
        nothing saved. Returns (proc, port)."""
        for attempt in range(3):
            p_port = port or free_port()
            args = [REDIS, "--bind", HOST, "--save", "", "--appendonly", "no"]
            if unix:
                args += ["--port", "0", "--unixsocket", unix, "--unixsocketperm", "700"]
            else:
                args += ["--port", str(p_port)]
            proc = self.spawn(args, "redis")
            try:
                if unix:
                    wait_until(lambda: os.path.exists(unix) or not proc.alive(), 10,
                               what="redis unix socket")
                    self.assertTrue(proc.alive(), proc.stdout()[-2000:])
                else:
                    wait_port(p_port, proc)
                return proc, p_port
            except AssertionError:
                if port is None and not unix and not proc.alive() and attempt < 2:
                    continue  # lost a race for the port
                raise
        raise AssertionError("unreachable")

    def start_session_whoami(self, name: str, redis: str | None):
        port = free_port()
        args = [WEIR_BIN, "whoami", "--listen", f"{HOST}:{port}", "--name", name]
        if redis:
            args += ["--redis", redis]
        proc = self.spawn(args, f"whoami-{name}")
        wait_port(port, proc)
        return proc, port

    def visit(self, port: int, session: str | None = None, cookie: str | None = None):
        """GET /session (with the session's cookie, or a raw Cookie header)."""
        headers = []
        if session is not None:
            headers.append(("Cookie", f"theme=dark; whoami_session={session}; x=1"))
        elif cookie is not None:
            headers.append(("Cookie", cookie))
        return http_get(port, "/session", headers, timeout=5)

    def visits(self, r) -> int:
        self.assertEqual(r.status, 200, r.text[:300])
        self.assertEqual(r.first_line().split(": ")[0], "visits", r.text[:300])
        return int(r.whoami_field("visits"))

    def new_session(self, r) -> str:
        """The session id of the Set-Cookie of a first visit."""
        cookies = r.header_all("Set-Cookie")
        self.assertEqual(len(cookies), 1, r.headers)
        m = COOKIE_RX.match(cookies[0])
        self.assertIsNotNone(m, cookies[0])
        return m.group(1)

    # -- tests ----------------------------------------------------------------------------------

    def test_any_instance_continues_any_session(self):
        _, rport = self.start_redis()
        store = f"{HOST}:{rport}"
        whoamis = {}
        for name in ("s1", "s2", "s3"):
            proc, port = self.start_session_whoami(name, store)
            whoamis[name] = (proc, port)
        cfg = lb_config(free_port(), [p for _, p in whoamis.values()], admin_port=free_port(),
                        backend_extra={"health_check": dict(FAST_CHECK)})
        lb = self.start_weir(cfg)

        r = self.visit(lb.port)
        self.assertEqual(self.visits(r), 1)
        session = self.new_session(r)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        names = [r.whoami_field("Name")]
        for n in range(2, 10):
            r = self.visit(lb.port, session)
            self.assertEqual(self.visits(r), n, f"visit {n} via {r.whoami_field('Name')}")
            self.assertEqual(r.header_all("Set-Cookie"), [], "a known session gets no new cookie")
            self.assertEqual(r.whoami_field("Session"), session)
            names.append(r.whoami_field("Name"))
        # Round robin: each visit went to another instance, and every instance served some.
        self.assertEqual(set(names), set(whoamis), names)
        for a, b in zip(names, names[1:]):
            self.assertNotEqual(a, b, names)

        # An instance straight, not through weir: the same session.
        r = self.visit(whoamis["s2"][1], session)
        self.assertEqual(self.visits(r), 10)

        # Kill the instance that served the last visit through weir: the session goes on.
        dead = names[-1]
        whoamis[dead][0].send_signal(signal.SIGKILL)
        whoamis[dead][0].wait(5)
        served = []
        for n in range(11, 17):
            r = self.visit(lb.port, session)
            self.assertEqual(self.visits(r), n, f"visit {n} after killing {dead}: {r.text[:200]}")
            served.append(r.whoami_field("Name"))
        self.assertNotIn(dead, served)
        self.assertEqual(set(served), set(whoamis) - {dead}, served)

        # Another client: its own session, from 1.
        r = self.visit(lb.port)
        self.assertEqual(self.visits(r), 1)
        self.assertNotEqual(self.new_session(r), session)

    def test_forged_or_garbage_cookie_starts_a_new_session(self):
        _, rport = self.start_redis()
        proc, port = self.start_session_whoami("f", f"{HOST}:{rport}")
        r = self.visit(port)
        good = self.new_session(r)
        self.assertEqual(self.visits(self.visit(port, good)), 2)
        for garbage in ("nothex-nothex-nothex-nothex-nothe", good[:31], good + "0", "",
                        "zz" + good[2:], "../" + good[3:], good[:16] + "%00" + good[19:]):
            r = self.visit(port, garbage)
            self.assertEqual(self.visits(r), 1, f"cookie {garbage!r}")
            fresh = self.new_session(r)
            self.assertNotIn(fresh, (good, garbage))
        # Forged but well formed: unknown to the store, so a session of its own from 1 (it
        # cannot reach anyone else's session without guessing 128 random bits).
        forged = "0123456789abcdef0123456789abcdef"
        r = self.visit(port, forged)
        self.assertEqual(self.visits(r), 1)
        self.assertEqual(self.visits(self.visit(port, forged)), 2)
        # Cookie headers without our cookie, or with the name only as a prefix: new sessions.
        for cookie in ("other=1", f"xwhoami_session={good}", f"whoami_sessionx={good}"):
            r = self.visit(port, cookie=cookie)
            self.assertEqual(self.visits(r), 1, cookie)
            self.new_session(r)
        # The real session was never disturbed.
        self.assertEqual(self.visits(self.visit(port, good)), 3)

    def test_without_redis_session_is_501(self):
        _, port = self.start_session_whoami("plain", None)
        r = self.visit(port)
        self.assertEqual(r.status, 501, r.text)
        self.assertIn("--redis", r.text)
        self.assertEqual(r.header_all("Set-Cookie"), [])
        lb = self.start_lb([port])
        self.assertEqual(self.visit(lb.port).status, 501)
        # Everything else answers as always.
        self.assertEqual(http_get(port, "/").whoami_name(), "plain")

    def test_redis_down_is_503_then_back(self):
        redis, rport = self.start_redis()
        proc, port = self.start_session_whoami("d", f"{HOST}:{rport}")
        lb = self.start_lb([port])
        r = self.visit(lb.port)
        session = self.new_session(r)
        self.assertEqual(self.visits(self.visit(lb.port, session)), 2)

        redis.send_signal(signal.SIGKILL)
        redis.wait(5)
        for via in (lb.port, port, lb.port):
            t0 = time.monotonic()
            r = self.visit(via, session)
            self.assertEqual(r.status, 503, r.text)
            self.assertIn("session store unavailable", r.text)
            self.assertLess(time.monotonic() - t0, 2.0, "a Redis that is down costs no wait")
        # A new client too (no cookie is set when nothing was stored).
        r = self.visit(lb.port)
        self.assertEqual(r.status, 503)
        self.assertEqual(r.header_all("Set-Cookie"), [])
        self.assertEqual(http_get(lb.port, "/").status, 200, "only /session needs Redis")
        proc.wait_log(r"session store unavailable")

        # Redis again on the same port (empty: nothing was saved): the session starts over.
        self.start_redis(rport)
        r = wait_until(lambda: (lambda x: x if x.status == 200 else None)(self.visit(lb.port, session)),
                       10, 0.1, "sessions to work again")
        self.assertEqual(self.visits(r), 1)
        self.assertEqual(self.visits(self.visit(lb.port, session)), 2)
        proc.wait_log(r"session store .* reachable")
        self.assertTrue(proc.alive())

    def test_redis_over_a_unix_socket(self):
        sock = os.path.join(self.tmp, "redis.sock")
        self.start_redis(unix=sock)
        _, port = self.start_session_whoami("u", f"unix:{sock}")
        r = self.visit(port)
        session = self.new_session(r)
        self.assertEqual(self.visits(r), 1)
        self.assertEqual(self.visits(self.visit(port, session)), 2)

    def test_bad_redis_argument(self):
        for bad in ("nope", "unix:", "127.0.0.1:", "127.0.0.1:0"):
            r = self.run_weir("whoami", "--listen", f"{HOST}:{free_port()}", "--redis", bad)
            self.assertEqual(r.returncode, 2, (bad, r.stderr))
            self.assertIn(b"--redis", r.stderr)


if __name__ == "__main__":
    unittest.main()
