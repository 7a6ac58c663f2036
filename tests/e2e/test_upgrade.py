"""SIGUSR2 binary upgrade (ops.md "Reloads and binary upgrades that keep connections"): the
running weir starts the executable at its path (replaced on disk) with the same arguments,
hands over its listening sockets and drains once the new one is ready. Proven with a loop of
new connections that must never fail, WebSockets and tcp tunnels kept by the old process,
the admin listener moving, a broken config or a broken binary leaving the old one serving."""

import os
import re
import shutil
import signal
import threading
import time
import unittest

from weirtest import (HOST, HttpConn, WEIR_BIN, WeirTestCase, admin_get, check_sanitizers,
                      free_port, http_get, pid_alive, to_yaml, wait_port, wait_until)
from test_reload_keeps import WsClient


class LoadLoop:
    """Threads sending requests, each on a new connection, until stopped: counts failures."""

    def __init__(self, port: int, threads: int = 4):
        self.port, self.ok, self.failures = port, 0, []
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                r = http_get(self.port, "/", timeout=10)
                good = r.status == 200
                what = f"status {r.status}"
            except Exception as e:  # noqa: BLE001 - any failure counts
                good, what = False, f"{type(e).__name__}: {e}"
            with self.lock:
                if good:
                    self.ok += 1
                else:
                    self.failures.append((time.monotonic(), what))

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(15)
        return self.ok, self.failures


class UpgradeTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.a = self.start_whoami("a")
        self.b = self.start_whoami("b")
        # The binary runs from a copy the test can replace, as a package upgrade would.
        self.bindir = os.path.join(self.tmp, "bin")
        os.makedirs(self.bindir)
        self.exe = os.path.join(self.bindir, "weir")
        shutil.copy2(WEIR_BIN, self.exe)
        self.new_pids = []
        self.addCleanup(self.stop_new_processes)

    def stop_new_processes(self):
        for pid in self.new_pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
        for pid in self.new_pids:
            try:
                wait_until(lambda: not pid_alive(pid), 15, what=f"pid {pid} to stop")
            except AssertionError:
                os.kill(pid, signal.SIGKILL)
                raise

    def replace_binary(self, source=WEIR_BIN, text=None):
        tmp = self.exe + ".new"
        if text is not None:
            with open(tmp, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o755)
        else:
            shutil.copy2(source, tmp)
        os.replace(tmp, self.exe)  # the running one keeps its (now unlinked) file

    def config(self, workers=2, extra_limits=None):
        self.port, self.tcp_port, self.admin_port = free_port(), free_port(), free_port()
        limits = {"drain_timeout": "5s"}
        limits.update(extra_limits or {})
        return {
            "workers": workers,
            "admin": {"listen": f"{HOST}:{self.admin_port}"},
            "limits": limits,
            "listeners": [
                {"name": "web", "listen": f"{HOST}:{self.port}", "backend": "app"},
                {"name": "raw", "listen": f"{HOST}:{self.tcp_port}", "mode": "tcp",
                 "backend": "app"},
            ],
            "backends": [{"name": "app", "balance": "round_robin", "servers": [
                {"address": self.a.address, "name": "a"}, {"address": self.b.address, "name": "b"}]}],
        }

    def start(self, cfg):
        self.cfg_path = os.path.join(self.tmp, "weir.yaml")
        with open(self.cfg_path, "w") as f:
            f.write(to_yaml(cfg) + "\n")
        p = self.spawn([self.exe, "run", "-c", self.cfg_path], "weir-old", expect_exit=0,
                       stop_timeout=20)
        wait_port(self.port, p)
        wait_port(self.admin_port, p)
        return p

    def upgrade(self, old):
        """SIGUSR2; returns the new pid once the old one says it is ready."""
        before = len(re.findall(r"upgrade: the new process \(pid \d+\) is ready", old.stderr()))
        t0 = time.monotonic()
        old.send_signal(signal.SIGUSR2)
        text = old.wait_log(r"upgrade: the new process \(pid \d+\) is ready", before + 1, 60)
        pid = int(re.findall(r"upgrade: the new process \(pid (\d+)\) is ready", text)[before])
        self.new_pids.append(pid)
        return pid, time.monotonic() - t0

    def test_upgrade_under_load_keeps_every_connection(self):
        old = self.start(self.config(workers=2))
        ws = WsClient(self.port)
        self.assertEqual(ws.echo(b"before"), b"before")
        tunnel = HttpConn(self.tcp_port, timeout=10)  # an HTTP keep-alive through a tcp tunnel
        self.assertEqual(tunnel.get("/").status, 200)
        loop = LoadLoop(self.port)
        self.addCleanup(loop.stop)
        wait_until(lambda: loop.ok > 50, 20, what="the load loop to run")
        # The new version takes one worker fewer: the old worker's extra socket is served too.
        with open(self.cfg_path, "w") as f:
            f.write(to_yaml(self.config_for_port(workers=1)) + "\n")
        self.replace_binary()
        new_pid, took = self.upgrade(old)
        print(f"\nupgrade: new process ready after {took:.2f} s")
        self.assertNotEqual(new_pid, old.pid)
        # The old process keeps its tunnels; it no longer accepts.
        self.assertEqual(ws.echo(b"after"), b"after")
        self.assertEqual(tunnel.get("/").status, 200)
        self.assertTrue(old.alive())
        wait_until(lambda: loop.ok > 200, 30, what="more requests after the upgrade")
        # Admin: answered by the new process (same port).
        doc = admin_get(self.admin_port, "/api/v1/backends")
        self.assertEqual(doc.status, 200)
        # New WebSockets and tunnels reach the new process.
        ws2 = WsClient(self.port)
        self.assertEqual(ws2.echo(b"new"), b"new")
        ws2.conn.close()
        ok, failures = loop.stop()
        self.assertEqual(failures, [], f"{len(failures)} failed of {ok + len(failures)}")
        print(f"upgrade under load: {ok} requests on new connections, 0 failed")
        # The old process ends when its last tunnel ends.
        t_close = time.monotonic()
        ws.conn.close()  # whoami's echo waits for the client to end the connection
        tunnel.close()
        old.wait(20)
        print(f"old process exited {time.monotonic() - t_close:.2f} s after its last tunnel closed")
        self.assertEqual(old.returncode(), 0)
        self.assertTrue(pid_alive(new_pid))
        self.assertEqual(http_get(self.port, "/").status, 200)
        log = old.stderr()
        self.assertIn("upgrade: serving (pid", log)
        self.assertIn("draining: no new connections", log)
        check_sanitizers(log, "weir (old and new)")

    def test_repeated_upgrades_under_load(self):
        """Three upgrades in a row (each new process upgraded in turn) under a loop of new
        connections: none refused, none failed; each previous process exits once drained."""
        old = self.start(self.config(workers=2))
        loop = LoadLoop(self.port, threads=6)
        self.addCleanup(loop.stop)
        wait_until(lambda: loop.ok > 50, 20, what="the load loop to run")
        current = old.pid
        pattern = r"upgrade: the new process \(pid (\d+)\) is ready"
        lingered = []
        for i in range(3):
            self.replace_binary()
            seen = len(re.findall(pattern, old.stderr()))
            os.kill(current, signal.SIGUSR2)
            text = old.wait_log(pattern, seen + 1, 60)  # every process writes to that stderr
            nxt = int(re.findall(pattern, text)[seen])
            self.new_pids.append(nxt)
            t0 = time.monotonic()
            n = loop.ok
            wait_until(lambda: loop.ok > n + 100, 30, what="requests after the upgrade")
            prev = current
            wait_until(lambda: not pid_alive(prev) or (prev == old.pid and not old.alive()), 20,
                       what=f"pid {prev} to exit")
            lingered.append(time.monotonic() - t0)
            current = nxt
        ok, failures = loop.stop()
        self.assertEqual(failures, [], f"{len(failures)} failed of {ok + len(failures)}")
        print(f"\n3 upgrades under load: {ok} requests on new connections, 0 failed; old "
              f"processes lingered {', '.join(f'{x:.2f}' for x in lingered)} s")
        self.assertEqual(old.returncode(), 0)
        self.assertEqual(http_get(self.port, "/").status, 200)
        self.assertEqual(admin_get(self.admin_port, "/healthz").status, 200)
        check_sanitizers(old.stderr(), "weir (every generation)")

    def test_tunnels_end_at_tunnel_drain_timeout(self):
        old = self.start(self.config(workers=1, extra_limits={
            "drain_timeout": "1s", "tunnel_drain_timeout": "3s"}))
        ws = WsClient(self.port)
        self.assertEqual(ws.echo(b"x"), b"x")
        self.replace_binary()
        self.upgrade(old)
        t0 = time.monotonic()
        self.assertEqual(ws.echo(b"still"), b"still")  # past nothing yet
        self.assertTrue(ws.conn.wait_closed(15), "the tunnel outlived tunnel_drain_timeout")
        closed_after = time.monotonic() - t0
        old.wait(10)
        self.assertEqual(old.returncode(), 0)
        self.assertGreater(closed_after, 1.5)  # kept past drain_timeout
        self.assertIn("tunnel", old.stderr())

    def test_broken_config_leaves_the_old_serving(self):
        old = self.start(self.config(workers=1))
        loop = LoadLoop(self.port, threads=2)
        self.addCleanup(loop.stop)
        wait_until(lambda: loop.ok > 20, 20, what="the load loop to run")
        with open(self.cfg_path, "a") as f:
            f.write("bogus_key: 1\n")
        self.replace_binary()
        old.send_signal(signal.SIGUSR2)
        text = old.wait_log(r"upgrade: the new process \(pid \d+\) exited with status 1 before "
                            r"it was ready; this process keeps serving", 1, 60)
        self.assertEqual(len(re.findall(r"ERROR +upgrade:", text)), 1, text[-2000:])
        self.assertIn("bogus_key", text)
        n = loop.ok
        wait_until(lambda: loop.ok > n + 20, 20, what="serving after the failed upgrade")
        ok, failures = loop.stop()
        self.assertEqual(failures, [])
        self.assertTrue(old.alive())
        # Fixed config: the next SIGUSR2 works.
        with open(self.cfg_path, "w") as f:
            f.write(to_yaml(self.config_for_port(workers=1)) + "\n")
        new_pid, _ = self.upgrade(old)
        old.wait(15)
        self.assertEqual(http_get(self.port, "/").status, 200)
        self.assertTrue(pid_alive(new_pid))

    def config_for_port(self, workers):
        port, tcp, admin = self.port, self.tcp_port, self.admin_port
        cfg = self.config(workers)
        self.port, self.tcp_port, self.admin_port = port, tcp, admin
        cfg["admin"]["listen"] = f"{HOST}:{admin}"
        cfg["listeners"][0]["listen"] = f"{HOST}:{port}"
        cfg["listeners"][1]["listen"] = f"{HOST}:{tcp}"
        return cfg

    def test_broken_binary_leaves_the_old_serving(self):
        old = self.start(self.config(workers=1))
        self.replace_binary(text="#!/bin/sh\necho 'broken build' >&2\nexit 3\n")
        old.send_signal(signal.SIGUSR2)
        old.wait_log(r"upgrade: the new process \(pid \d+\) exited with status 3 before it was "
                     r"ready", 1, 30)
        self.assertEqual(http_get(self.port, "/").status, 200)
        self.assertEqual(admin_get(self.admin_port, "/healthz").status, 200)
        # Not executable at all.
        self.replace_binary(text="not a program")
        os.chmod(self.exe, 0o644)
        old.send_signal(signal.SIGUSR2)
        old.wait_log(r"upgrade: the new process \(pid \d+\) could not be started: Permission "
                     r"denied", 1, 30)
        self.assertEqual(http_get(self.port, "/").status, 200)
        self.assertTrue(old.alive())


if __name__ == "__main__":
    unittest.main()
