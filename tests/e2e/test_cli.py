"""The command line: version, check, run's exit codes, usage errors, and whoami's endpoints."""

import re
import socket
import time
import unittest

from weirtest import HttpConn, WeirTestCase, free_port, http_get, http_request, lb_config

LOC = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): (?P<msg>.+)$")


def out(p):
    return p.stdout.decode(), p.stderr.decode()


class CliTest(WeirTestCase):
    def good_config(self):
        return lb_config(free_port(), [free_port(), {"address": f"127.0.0.1:{free_port()}", "weight": 2}],
                         admin_port=free_port())

    def test_version(self):
        p = self.run_weir("version")
        so, se = out(p)
        self.assertEqual(p.returncode, 0)
        self.assertRegex(so, r"^weir \d+\.\d+\.\d+\S*\n$")

    def test_check_good_config(self):
        path = self.write_config(self.good_config())
        p = self.run_weir("check", "-c", path)
        so, se = out(p)
        self.assertEqual(p.returncode, 0, se)
        lines = so.strip().splitlines()
        self.assertEqual(len(lines), 1, so)
        self.assertIn("ok", lines[0])
        self.assertIn("1 listener", lines[0])
        self.assertIn("2 servers", lines[0])

    def test_shipped_examples_pass_check(self):
        """The configs users copy (examples/, examples/fleet/) are valid as written; the fleet's
        `cluster:` and `announce:` are not contacted by `weir check`."""
        import glob
        import os
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")
        files = sorted(glob.glob(os.path.join(root, "*.yaml")) +
                       glob.glob(os.path.join(root, "fleet", "*.yaml")))
        self.assertGreaterEqual(len(files), 3, files)
        for path in files:
            r = self.run_weir("check", "-c", path)
            self.assertEqual(r.returncode, 0, (path, r.stderr.decode()))
            self.assertIn(b": ok (", r.stdout)

    def test_check_does_not_bind(self):
        cfg = self.good_config()
        port = int(cfg["listeners"][0]["listen"].rsplit(":", 1)[1])
        with socket.socket() as s:  # the listen address is taken: check does not care
            s.bind(("127.0.0.1", port))
            s.listen()
            p = self.run_weir("check", "-c", self.write_config(cfg))
        self.assertEqual(p.returncode, 0, out(p)[1])

    def test_check_bad_config_reports_every_error(self):
        text = ("workers: 1\n"
                "bogus: 3\n"
                "listeners:\n"
                "  - name: web\n"
                "    listen: 127.0.0.1:8080\n"
                "    backend: missing\n"
                "backends:\n"
                "  - name: web\n"
                "    balance: nope\n"
                "    timeouts: {connect: 5 parsecs}\n"
                "    servers:\n"
                "      - address: 127.0.0.1:9001\n"
                "        weight: -1\n")
        path = self.write_config(text, "bad.yaml")
        p = self.run_weir("check", "-c", path)
        so, se = out(p)
        self.assertEqual(p.returncode, 1, so + se)
        errors = [LOC.match(l) for l in se.splitlines() if "warning" not in l]
        self.assertTrue(all(errors), se)
        where = {(int(m["line"]), int(m["col"])) for m in errors}
        for m in errors:
            self.assertEqual(m["file"], path)
        # unknown key, missing backend, bad balance, bad duration, bad weight: 5 errors.
        self.assertGreaterEqual(len(errors), 5, se)
        self.assertIn(2, {l for l, _ in where})   # bogus
        self.assertIn(6, {l for l, _ in where})   # missing backend
        self.assertIn(9, {l for l, _ in where})   # balance
        self.assertIn(10, {l for l, _ in where})  # duration
        self.assertIn(13, {l for l, _ in where})  # weight
        self.assertIn((2, 1), where)
        self.assertNotIn("ok", so)
        self.assertNotIn("terminate", se)

    def test_check_duplicate_names(self):
        text = ("listeners:\n"
                "  - name: web\n"
                "    listen: 127.0.0.1:8080\n"
                "    backend: a\n"
                "backends:\n"
                "  - name: a\n"
                "    servers: [{address: 127.0.0.1:1}]\n"
                "  - name: a\n"
                "    servers: [{address: 127.0.0.1:2}]\n")
        p = self.run_weir("check", "-c", self.write_config(text))
        so, se = out(p)
        self.assertEqual(p.returncode, 1)
        m = [LOC.match(l) for l in se.splitlines()]
        self.assertTrue(any(x and x["line"] == "8" for x in m), se)

    def test_check_yaml_syntax_error(self):
        p = self.run_weir("check", "-c", self.write_config("listeners: [\n  - {name: x\n"))
        so, se = out(p)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(LOC.match(se.splitlines()[0]), se)

    def test_run_missing_config_exit_1(self):
        p = self.run_weir("run", "-c", "/nonexistent/weir.yaml", timeout=10)
        so, se = out(p)
        self.assertEqual(p.returncode, 1)
        self.assertIn("/nonexistent/weir.yaml", se)
        self.assertEqual(len(se.strip().splitlines()), 1, se)

    def test_run_bad_config_exit_1(self):
        p = self.run_weir("run", "-c", self.write_config("workers: many\nlisteners: []\n"), timeout=10)
        so, se = out(p)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(LOC.match(se.splitlines()[0]), se)

    def test_usage_errors_exit_2(self):
        for args in [(), ("frobnicate",), ("run",), ("check",), ("run", "-c"), ("run", "-x", "y"),
                     ("whoami",), ("whoami", "--listen"), ("whoami", "--listen", "127.0.0.1:1", "--delay", "soon"),
                     ("demo", "extra")]:
            with self.subTest(args=args):
                p = self.run_weir(*args, timeout=10)
                so, se = out(p)
                self.assertEqual(p.returncode, 2, f"{args}: {so}{se}")
                self.assertTrue(se.startswith("weir"), se)
                self.assertNotIn("terminate", se)

    def test_help(self):
        p = self.run_weir("--help")
        self.assertEqual(p.returncode, 0)
        self.assertIn("weir run -c FILE", out(p)[0])

    def test_address_in_use_exit_3(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            cfg = lb_config(port, [free_port()])
            p = self.run_weir("run", "-c", self.write_config(cfg), timeout=15)
            so, se = out(p)
            self.assertEqual(p.returncode, 3, se)
            lines = se.strip().splitlines()
            self.assertEqual(len(lines), 1, se)
            self.assertIn(f"127.0.0.1:{port}", lines[0])
            self.assertRegex(lines[0].lower(), r"in use")
            # whoami too.
            p = self.run_weir("whoami", "--listen", f"127.0.0.1:{port}", timeout=10)
            so, se = out(p)
            self.assertEqual(p.returncode, 3)
            self.assertEqual(len(se.strip().splitlines()), 1, se)
            self.assertIn("in use", se.lower())

    def test_admin_address_in_use_exit_3(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            cfg = lb_config(free_port(), [free_port()], admin_port=port)
            p = self.run_weir("run", "-c", self.write_config(cfg), timeout=15)
            so, se = out(p)
            self.assertEqual(p.returncode, 3, se)
            self.assertEqual(len(se.strip().splitlines()), 1, se)
            self.assertIn(str(port), se)


class WhoamiTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.w = self.start_whoami("who")

    def test_default_answer(self):
        r = http_get(self.w.port, "/some/path?q=1", headers=[("X-Custom", "v1")], host="h.test")
        self.assertEqual(r.status, 200)
        lines = r.text.splitlines()
        self.assertEqual(lines[0], "Name: who")
        self.assertTrue(lines[1].startswith("Hostname: "))
        self.assertIn("GET /some/path?q=1 HTTP/1.1", lines)
        self.assertIn("Host: h.test", lines)
        self.assertIn("X-Custom: v1", lines)

    def test_body_length(self):
        r = http_request(self.w.port, "PUT", "/", body=b"z" * 12345)
        self.assertEqual(r.whoami_field("Body-Length"), "12345")

    def test_healthz_and_post_status(self):
        r = http_get(self.w.port, "/healthz")
        self.assertEqual(r.status, 200)
        r = http_request(self.w.port, "POST", "/healthz", body=b"503")
        self.assertEqual(r.status, 200)
        self.assertEqual(http_get(self.w.port, "/healthz").status, 503)
        # Other paths are unaffected.
        self.assertEqual(http_get(self.w.port, "/").status, 200)
        r = http_request(self.w.port, "POST", "/healthz", body=b"not a status")
        self.assertEqual(r.status, 400)
        self.assertEqual(http_get(self.w.port, "/healthz").status, 503)
        http_request(self.w.port, "POST", "/healthz", body=b"200")
        self.assertEqual(http_get(self.w.port, "/healthz").status, 200)

    def test_status_param(self):
        for s in (201, 404, 418, 500, 503):
            self.assertEqual(http_get(self.w.port, f"/?status={s}").status, s)

    def test_size_param(self):
        r = http_get(self.w.port, "/?size=5000")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.body.endswith(b"x" * 5000))
        self.assertFalse(r.body.endswith(b"x" * 5001))
        self.assertEqual(len(r.body), int(r.header("Content-Length")))

    def test_delay_param(self):
        t0 = time.monotonic()
        r = http_get(self.w.port, "/?delay=400ms")
        self.assertEqual(r.status, 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.35)

    def test_delay_flag(self):
        slow = self.start_whoami("slow", delay="400ms")
        t0 = time.monotonic()
        r = http_get(slow.port, "/")
        self.assertEqual(r.whoami_name(), "slow")
        self.assertGreaterEqual(time.monotonic() - t0, 0.35)

    def test_keepalive_and_sigterm(self):
        with HttpConn(self.w.port) as c:
            for i in range(3):
                self.assertIn(f"GET /{i} HTTP/1.1", c.get(f"/{i}").text)
        self.assertEqual(self.w.proc.stop(), 0)


if __name__ == "__main__":
    unittest.main()
