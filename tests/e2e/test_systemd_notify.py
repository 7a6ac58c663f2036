"""The systemd notify protocol (ops.md): with NOTIFY_SOCKET set, `weir run` sends READY=1 once
it listens, RELOADING=1 then READY=1 around a SIGHUP reload (a refused reload too: the old
config still serves), STOPPING=1 when SIGTERM starts the drain; in that order, each one
datagram. The socket here is the test's own (a path, and the abstract namespace), standing in
for systemd; contrib/weir.service is checked to be a unit systemd would load (systemd-analyze
verify, when the tool is there)."""

import os
import shutil
import signal
import socket
import subprocess
import time
import unittest

from weirtest import WEIR_BIN, WeirTestCase, free_port, http_get as get, lb_config, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
UNIT = os.path.join(HERE, "..", "..", "contrib", "weir.service")


class NotifyTest(WeirTestCase):
    def listen(self, abstract: bool) -> tuple[socket.socket, str]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        if abstract:
            name = f"weir-notify-test-{os.getpid()}-{time.monotonic_ns()}"
            s.bind("\0" + name)
            return s, "@" + name
        path = os.path.join(self.tmp, "notify.sock")
        s.bind(path)
        return s, path

    def messages(self, s: socket.socket, until: str, timeout: float = 10.0) -> list[dict]:
        """Datagrams (each as a dict of its KEY=VALUE lines) until one holds `until`."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            self.assertGreater(left, 0, f"no {until} from weir; got {out}")
            s.settimeout(left)
            data = s.recv(4096).decode()
            msg = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
            out.append(msg)
            if until in msg:
                return out

    def start(self, notify: str, backend_port: int):
        port = free_port()
        cfg = lb_config(port, [backend_port])
        path = self.write_config(cfg)
        p = self.spawn([WEIR_BIN, "run", "-c", path], "weir", env={"NOTIFY_SOCKET": notify})
        return p, port, path, cfg

    def check_lifecycle(self, abstract: bool):
        w = self.start_whoami("n")
        s, notify = self.listen(abstract)
        p, port, path, cfg = self.start(notify, w.port)
        first = self.messages(s, "READY")
        self.assertEqual(first[-1]["READY"], "1")
        self.assertEqual(first[-1]["MAINPID"], str(p.pid))
        # READY means listening: a request is served at once.
        self.assertEqual(get(port, "/ready").status, 200)
        # A good reload: RELOADING=1 (with its monotonic time), then READY=1.
        p.send_signal(signal.SIGHUP)
        msgs = self.messages(s, "READY")
        self.assertEqual(msgs[0].get("RELOADING"), "1", msgs)
        self.assertTrue(msgs[0].get("MONOTONIC_USEC", "").isdigit(), msgs)
        self.assertIn("reloaded", msgs[-1].get("STATUS", ""), msgs)
        # A refused reload: the same pair, READY again (the old config serves).
        with open(path, "w") as f:
            f.write("listeners: [\n")
        p.send_signal(signal.SIGHUP)
        msgs = self.messages(s, "READY")
        self.assertEqual(msgs[0].get("RELOADING"), "1", msgs)
        self.assertIn("refused", msgs[-1].get("STATUS", ""), msgs)
        self.assertEqual(get(port, "/still").status, 200)
        # SIGTERM: STOPPING=1 before the process ends.
        p.send_signal(signal.SIGTERM)
        msgs = self.messages(s, "STOPPING")
        self.assertEqual(msgs[-1]["STOPPING"], "1")
        p.wait(20)

    def test_upgrade_moves_mainpid(self):
        """SIGUSR2: once the new process is ready, the old one tells the manager MAINPID=<new>
        (it is the main process until then); the new one sends no second READY=1; later
        messages (a reload) come from the new main process."""
        w = self.start_whoami("u")
        s, notify = self.listen(False)
        p, port, path, cfg = self.start(notify, w.port)
        self.messages(s, "READY")
        p.send_signal(signal.SIGUSR2)
        msgs = self.messages(s, "MAINPID", 30)
        self.assertNotIn("READY", msgs[-1], msgs)
        new_pid = int(msgs[-1]["MAINPID"])
        self.assertNotEqual(new_pid, p.pid)
        self.addCleanup(lambda: os.kill(new_pid, signal.SIGTERM) if os.path.exists(f"/proc/{new_pid}") else None)
        p.wait(20)
        self.assertEqual(p.returncode(), 0)
        self.assertEqual(get(port, "/after").status, 200)
        os.kill(new_pid, signal.SIGHUP)
        msgs = self.messages(s, "READY")
        self.assertEqual(msgs[0].get("RELOADING"), "1", msgs)
        self.assertEqual(msgs[-1].get("MAINPID"), str(new_pid), msgs)
        os.kill(new_pid, signal.SIGTERM)
        self.assertEqual(self.messages(s, "STOPPING")[-1]["STOPPING"], "1")

    def test_path_socket(self):
        self.check_lifecycle(abstract=False)

    def test_abstract_socket(self):
        self.check_lifecycle(abstract=True)

    def test_without_notify_socket_nothing_changes(self):
        w = self.start_whoami("quiet")
        lb = self.start_lb([w.port])
        self.assertEqual(get(lb.port, "/").status, 200)

    def test_bad_notify_socket_is_a_warning(self):
        w = self.start_whoami("bad")
        p, port, _, _ = self.start("relative/path", w.port)
        wait_port(port, p)
        p.wait_log(r"running with \d+ worker")
        self.assertEqual(get(port, "/").status, 200)
        self.assertIn("NOTIFY_SOCKET", p.stderr())

    def test_unit_file(self):
        with open(UNIT) as f:
            text = f.read()
        for line in ["Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "LimitNOFILE=",
                     "ExecStart=/usr/local/bin/weir run -c /etc/weir/weir.yaml"]:
            self.assertIn(line, text)
        tool = shutil.which("systemd-analyze")
        if tool is None:
            return  # the unit's syntax is checked where systemd is installed
        r = subprocess.run([tool, "verify", "--man=no", UNIT], capture_output=True, text=True, timeout=60)
        # verify complains about the binary path not existing on this machine; nothing else.
        problems = [line for line in (r.stdout + r.stderr).splitlines()
                    if line.strip() and "/usr/local/bin/weir" not in line and "Command" not in line]
        self.assertEqual(problems, [], r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
