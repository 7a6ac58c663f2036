"""weirtest: the stdlib-only harness of weir's end-to-end tests.

Every test runs real processes (`weir whoami`, `weir run -c FILE`, small Python backends) on
127.0.0.1 with ephemeral ports, talks to them over raw sockets with timeouts everywhere, and
cleans everything up through addCleanup, on failure too.

The binary is $WEIR_BIN (CTest sets it), or ../../build/debug/weir relative to this folder.
Processes must be started from the main thread: each child gets PR_SET_PDEATHSIG(SIGKILL) so
that nothing outlives a killed test runner, and Linux ties that to the creating thread.

Every process a test starts is checked when the test ends (Proc.finish, run as a cleanup, so a
problem fails the test that owned the process): a process still running is stopped with SIGTERM
(a weir process that needs SIGKILL after that fails the test: weir must stop on SIGTERM), its exit
status must be the expected one (0 for weir and `weir whoami`, unless the test said otherwise with
Proc.expect_exit or killed it on purpose), and its stderr must hold no sanitizer report (ASan,
LSan, UBSan, TSan). Processes run to completion (Env.run_weir, tlstest.run) are scanned at once.

Under CI (CI=true) nothing may pass by skipping: require() fails where it would skip locally.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
WEIR_BIN = os.path.abspath(os.environ.get("WEIR_BIN") or os.path.join(HERE, "..", "..", "build", "debug", "weir"))
HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds for a process to accept connections
IO_TIMEOUT = 10.0  # default socket timeout
CI = os.environ.get("CI") == "true"


# ----------------------------------------------------------------------------------------------
# Sanitizers: make the debug build report recognisably, and find the reports

def _add_options(var: str, defaults: str):
    """Adds each KEY=VALUE of defaults to the ':'-separated $var unless KEY is set there already."""
    current = os.environ.get(var, "")
    have = {kv.split("=", 1)[0] for kv in current.split(":") if kv}
    extra = [kv for kv in defaults.split(":") if kv.split("=", 1)[0] not in have]
    if extra:
        os.environ[var] = ":".join(([current] if current else []) + extra)


# Set at import, so that every process the tests start (Popen, subprocess.run) inherits them; an
# option already set in the environment wins. ASan's errors halt (its default) with exit 1; a
# leak found at exit (the debug build is GCC's libasan, where LeakSanitizer runs inside ASan and
# by default exits 1 like any ASan error) exits 23, so a leak shows in the exit status too; UBSan
# (-fno-sanitize-recover=undefined: the first report aborts) prints the stack of the report.
_add_options("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1:print_summary=1")
_add_options("LSAN_OPTIONS", "exitcode=23:print_suppressions=0")
_add_options("UBSAN_OPTIONS", "print_stacktrace=1:print_summary=1:report_error_type=1")

SANITIZER_REPORT = re.compile(
    r"ERROR: (?:Address|Leak|Memory|Thread|UndefinedBehavior)Sanitizer"
    r"|SUMMARY: \w*Sanitizer"
    r"|ThreadSanitizer"
    r"|runtime error:")


def sanitizer_report(text: str, context: int = 60) -> str | None:
    """The first sanitizer report in text (from a few lines before its first line, up to context
    lines), or None if there is none."""
    m = SANITIZER_REPORT.search(text)
    if m is None:
        return None
    lines = text[:m.start()].split("\n")
    start = max(0, len(lines) - 3)
    tail = "\n".join(lines[start:]) + text[m.start():]
    return "\n".join(tail.split("\n")[:context])


def check_sanitizers(stderr, what: str):
    """Raises AssertionError with the report if stderr (str or bytes) holds a sanitizer report."""
    if isinstance(stderr, (bytes, bytearray)):
        stderr = stderr.decode("utf-8", "replace")
    report = sanitizer_report(stderr or "")
    if report is not None:
        raise AssertionError(f"sanitizer report in {what}'s stderr:\n{report}")


def require(condition, why: str, tc: unittest.TestCase | None = None):
    """A precondition that a test cannot run without (a tool, a free port, a file limit). Not
    met: locally the test is skipped (or tc.skipTest), under CI (CI=true) it fails -- no test
    may pass in CI by skipping. Returns condition."""
    if condition:
        return condition
    if CI:
        raise AssertionError(f"CI=true, so this cannot be skipped: {why}")
    if tc is not None:
        tc.skipTest(why)
    raise unittest.SkipTest(why)


def degrade(why: str):
    """A fallback a test takes when the machine cannot run its full version (a smaller test, a
    coarser measurement): locally it prints a note and returns, under CI (CI=true) it fails --
    CI runs every test in full."""
    if CI:
        raise AssertionError(f"CI=true, so this test cannot run a reduced version: {why}")
    print(f"\nnote: {why}; running a reduced version (this would fail under CI=true)")


# ----------------------------------------------------------------------------------------------
# Small utilities


_recent_ports: list[int] = []


def free_port() -> int:
    """A loopback port that was free a moment ago (bind port 0, read it, close), and not one of
    the last 256 it handed out (the kernel may give the same port twice in a row, and a test
    that takes two ports before binding either would get a config with one address twice)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in _recent_ports:
            _recent_ports.append(port)
            del _recent_ports[:-256]
            return port


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Polls predicate() until it returns something truthy (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def port_accepts(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def proc_status(pid: int) -> dict:
    """VmRSS / VmHWM / VmSize of a process from /proc/PID/status, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "VmSize", "VmPeak", "RssAnon"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def rss(pid: int) -> int:
    return proc_status(pid)["VmRSS"]


def rss_anon(pid: int) -> int:
    """Resident anonymous memory (heap, stacks): what a process allocated, without its code and
    file pages, which the kernel may drop and fault in again under memory pressure."""
    return proc_status(pid)["RssAnon"]


def hwm(pid: int) -> int:
    return proc_status(pid)["VmHWM"]


def reset_hwm(pid: int) -> bool:
    """Resets VmHWM to the current RSS (writing 5 to /proc/PID/clear_refs); False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child_pids(pid: int) -> list[int]:
    pids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    pids += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return sorted(set(pids))


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------
# YAML (enough for weir configs: dicts, lists, strings, numbers, booleans)

_PLAIN = re.compile(r"^[A-Za-z0-9_./\-][A-Za-z0-9_./:\-\[\] ]*$")


def _scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and not s.endswith(" ") and ": " not in s and s.lower() not in ("true", "false", "null", "yes", "no", "~"):
        return s
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent: int = 0) -> str:
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                lines.append(f"{pad}{k}: []")
            elif isinstance(v, dict):
                lines.append(f"{pad}{k}: {{}}")
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict) and item:
                sub = to_yaml(item, indent + 2).split("\n")
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines.extend(sub[1:])
            elif isinstance(item, list):
                lines.append(f"{pad}-")
                lines.append(to_yaml(item, indent + 2))
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(pad + _scalar(obj))
    return "\n".join(lines)


def lb_config(listen_port: int, servers, *, backend: str = "web", admin_port: int | None = None,
              workers=1, routes=None, backends=None, backend_extra: dict | None = None,
              listener_extra: dict | None = None, top_extra: dict | None = None) -> dict:
    """A config dict: one http listener on listen_port, one backend `backend` with `servers`
    (a list of ports, or of server dicts), optional admin, plus extra keys where given.
    `backends` (a list of backend dicts) replaces the generated backend when given."""
    cfg: dict = {"workers": workers}
    if admin_port is not None:
        cfg["admin"] = {"listen": f"{HOST}:{admin_port}"}
    listener = {"name": "web", "listen": f"{HOST}:{listen_port}"}
    if routes is not None:
        listener["routes"] = routes
    else:
        listener["backend"] = backend
    listener.update(listener_extra or {})
    cfg["listeners"] = [listener]
    if backends is None:
        svs = []
        for s in servers:
            svs.append({"address": f"{HOST}:{s}"} if isinstance(s, int) else dict(s))
        b = {"name": backend}
        b.update(backend_extra or {})
        b["servers"] = svs
        backends = [b]
    cfg["backends"] = backends
    cfg.update(top_extra or {})
    return cfg


# ----------------------------------------------------------------------------------------------
# Processes

_libc = None


def _pdeathsig():
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# Signals after which a process is expected to exit normally (and with its expected status);
# after any other signal a test sends (SIGKILL to simulate a crash, SIGSTOP to simulate a hang)
# the exit status is the test's business.
_GRACEFUL = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def is_weir(args) -> bool:
    return bool(args) and os.path.basename(str(args[0])) == "weir"


class Proc:
    """A child process with stdout/stderr captured to files in logdir.

    expect_exit is the exit status it must end with (default: 0 for weir, which must exit 0 on
    SIGTERM/SIGINT, whoami included; None = not checked, the default for other programs). A test
    that makes it end otherwise on purpose says so: proc.expect(3), proc.expect(None) when the
    test checks the status itself, or stop(sig=SIGKILL)/send_signal(SIGKILL), which imply it.
    finish() (a cleanup) stops it, checks that status, and scans its stderr for sanitizer reports.
    """

    def __init__(self, args: list[str], name: str, logdir: str, env: dict | None = None,
                 expect_exit: int | None = ...):
        self.args = list(args)
        self.name = name
        self.weir = is_weir(args)
        self.expect_exit = (0 if self.weir else None) if expect_exit is ... else expect_exit
        self.on_purpose = False  # the test sent a non-graceful signal (SIGKILL, SIGSTOP, ...)
        self.killed = False  # SIGKILL was needed after a graceful signal (by stop() or finish())
        self.stdout_path = os.path.join(logdir, f"{name}.stdout")
        self.stderr_path = os.path.join(logdir, f"{name}.stderr")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                          env=env, preexec_fn=_pdeathsig, close_fds=True)
        self.pid = self.popen.pid

    def expect(self, code: int | None):
        """The exit status finish() must see (None: any; the test checks it itself)."""
        self.expect_exit = code
        return self

    def stderr(self) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout(self) -> str:
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def returncode(self):
        return self.popen.poll()

    def send_signal(self, sig: int):
        if sig not in _GRACEFUL:
            self.on_purpose, self.expect_exit = True, None  # killed (or stopped) on purpose
        if self.popen.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float):
        """The exit code, or None if still running after timeout seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0):
        """sig, then SIGKILL if still running after timeout; returns the exit code. A SIGKILL
        after a graceful signal is remembered: finish() reports it for a process whose status
        is checked."""
        if sig not in _GRACEFUL:
            self.on_purpose, self.expect_exit = True, None  # killed on purpose
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            if self.wait(timeout) is None:
                if sig in _GRACEFUL:
                    self.killed = True
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=10)
        return self.popen.returncode

    def problems(self) -> list[str]:
        """What is wrong with how this (finished) process ended: a SIGKILL after SIGTERM, an
        unexpected exit status, a sanitizer report."""
        out = []
        code = self.popen.poll()
        if self.killed and (self.weir or self.expect_exit is not None) and not self.on_purpose:
            # weir must stop on SIGTERM, whatever exit status the test expects.
            out.append(f"did not exit after SIGTERM: had to be killed with SIGKILL (exit status {code})")
        elif self.expect_exit is not None:
            if code != self.expect_exit:
                how = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with {code}"
                out.append(f"{how}, expected exit status {self.expect_exit}")
        report = sanitizer_report(self.stderr())
        if report is not None:
            out.append(f"sanitizer report in its stderr:\n{report}")
        return out

    def finish(self, timeout: float = 10.0):
        """The cleanup of every spawned process: stops it if still running (SIGTERM, SIGKILL after
        timeout) and raises AssertionError -- failing the test that owns it -- on any problems()."""
        if self.popen.poll() is None:
            self.stop(signal.SIGTERM, timeout)
        problems = self.problems()
        if problems:
            text = f"{self.name} (pid {self.pid}, {' '.join(map(str, self.args))}): " + "; ".join(problems)
            if "sanitizer report" not in text:
                text += f"\n--- {self.name} stderr (tail) ---\n{self.stderr()[-3000:]}"
            raise AssertionError(text)

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 10.0) -> str:
        """Waits until regex pattern matches at least count times in stderr; returns stderr."""
        rx = re.compile(pattern)

        def seen():
            text = self.stderr()
            return text if len(rx.findall(text)) >= count else None

        try:
            return wait_until(seen, timeout, 0.05, f"{count}x /{pattern}/ in {self.name}'s log")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- {self.name} stderr ---\n{self.stderr()[-4000:]}") from None


def wait_port(port: int, proc: Proc | None = None, timeout: float = START_TIMEOUT):
    """Waits until port accepts connections; fails early with proc's stderr if it exits."""
    deadline = time.monotonic() + timeout
    while True:
        if port_accepts(port):
            return
        if proc is not None and not proc.alive():
            raise AssertionError(f"{proc.name} exited with {proc.returncode()} before listening on "
                                 f"{port}:\n{proc.stderr()[-4000:]}")
        if time.monotonic() >= deadline:
            extra = f":\n{proc.stderr()[-4000:]}" if proc is not None else ""
            raise AssertionError(f"port {port} not accepting after {timeout}s{extra}")
        time.sleep(0.02)


class Whoami:
    def __init__(self, proc: Proc, port: int, name: str):
        self.proc, self.port, self.name = proc, port, name
        self.address = f"{HOST}:{port}"


class Weir:
    def __init__(self, proc: Proc, config_path: str, port: int | None, admin_port: int | None):
        self.proc, self.config_path, self.port, self.admin_port = proc, config_path, port, admin_port

    @property
    def pid(self):
        return self.proc.pid

    def write_config(self, cfg):
        text = cfg if isinstance(cfg, str) else to_yaml(cfg) + "\n"
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def reload(self, cfg=None, wait: bool = True, timeout: float = 10.0):
        """Optionally rewrites the config, sends SIGHUP and waits for the reload's log line
        ("reload: ... applied" or a reload error); returns True if it was applied."""
        if cfg is not None:
            self.write_config(cfg)
        rx = r"reload: .*(applied|[Kk]eeping the running config)"
        before = len(re.findall(rx, self.proc.stderr()))
        self.proc.send_signal(signal.SIGHUP)
        if not wait:
            return None
        text = self.proc.wait_log(rx, before + 1, timeout)
        last = re.findall(rx, text)[before]
        return last == "applied"

    def backends(self):
        return admin_backends(self.admin_port)

    def server(self, backend: str, server: str) -> dict:
        return find_server(self.backends(), backend, server)

    def metrics(self):
        return metrics(self.admin_port)


# ----------------------------------------------------------------------------------------------
# Raw HTTP/1.1 client


class IncompleteResponse(Exception):
    """The connection ended before the response was complete."""

    def __init__(self, msg, partial=None):
        super().__init__(msg)
        self.partial = partial


class Response:
    def __init__(self):
        self.version = ""
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.body_length = 0
        self.framing = ""  # length | chunked | close | none
        self.interim: list[Response] = []
        self.trailers: list[tuple[str, str]] = []
        self.raw_head = b""

    def header(self, name: str, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def header_all(self, name: str) -> list[str]:
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def first_line(self) -> str:
        return self.text.split("\n", 1)[0]

    def whoami_name(self):
        """The `Name:` a whoami backend put on the first line of its answer."""
        line = self.first_line()
        return line[len("Name: "):] if line.startswith("Name: ") else None

    def whoami_field(self, key: str):
        """A `Key: value` line of a whoami answer (the first one), or None."""
        for line in self.text.split("\n"):
            if line.startswith(key + ": "):
                return line[len(key) + 2:]
        return None

    def __repr__(self):
        return f"<Response {self.status} {self.reason!r} {len(self.body)}B {self.framing}>"


def build_request(method: str, target: str, headers=None, body: bytes | None = None,
                  host: str | None = "example.test", version: str = "HTTP/1.1") -> bytes:
    """Request bytes; headers is a list of (name, value) or a dict. Adds Host (unless
    host is None or headers has one) and Content-Length for a body (unless framed already)."""
    hs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in hs}
    if host is not None and "host" not in names:
        hs.insert(0, ("Host", host))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        hs.append(("Content-Length", str(len(body))))
    out = f"{method} {target} {version}\r\n".encode()
    for k, v in hs:
        out += f"{k}: {v}\r\n".encode("latin-1")
    out += b"\r\n"
    if body is not None:
        out += body
    return out


class HttpConn:
    """One client connection. send() exact bytes, read_response() one response at a time (so
    pipelining works), is_closed() to check that the peer closed."""

    def __init__(self, port: int, host: str = HOST, timeout: float = IO_TIMEOUT,
                 source: str | None = None):
        """source: the local address to connect from (any of 127.0.0.0/8 on loopback)."""
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def settimeout(self, t):
        self.sock.settimeout(t)

    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _fill(self) -> bool:
        """Reads more; False at EOF (or reset)."""
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(262144)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _read_line(self, limit: int = 1 << 20) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                return self._take(i + 2)[:-2]
            if len(self.buf) > limit:
                raise IncompleteResponse("line too long")
            if not self._fill():
                raise IncompleteResponse("connection closed in a line")

    def read_head(self) -> Response:
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            if not self._fill():
                if self.buf:
                    raise IncompleteResponse(f"connection closed in a response head: {bytes(self.buf[:200])!r}")
                raise IncompleteResponse("connection closed before any response byte")
        head = self._take(i + 4)
        r = Response()
        r.raw_head = head
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ValueError(f"bad status line {lines[0]!r}")
        r.version = parts[0]
        r.status = int(parts[1])
        r.reason = parts[2] if len(parts) > 2 else ""
        for line in lines[1:]:
            k, _, v = line.decode("latin-1").partition(":")
            r.headers.append((k, v.strip(" \t")))
        return r

    def read_response(self, method: str = "GET", discard_body: bool = False,
                      keep_interim: bool = False) -> Response:
        """One whole response. 1xx interim responses (not 101) are collected in .interim and
        skipped; a 101 is returned at once (the rest of the stream stays in the buffer).
        discard_body: count the body (body_length) without keeping it."""
        interim = []
        while True:
            r = self.read_head()
            if 100 <= r.status < 200 and r.status != 101:
                interim.append(r)
                continue
            break
        r.interim = interim
        if r.status == 101:
            r.framing = "none"
            return r
        keep = [] if not discard_body else None

        def add(data: bytes):
            r.body_length += len(data)
            if keep is not None:
                keep.append(data)

        te = r.header("Transfer-Encoding")
        cl = r.header("Content-Length")
        if method.upper() == "HEAD" or r.status in (204, 304):
            r.framing = "none"
        elif te is not None and "chunked" in te.lower():
            r.framing = "chunked"
            while True:
                line = self._read_line()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        t = self._read_line()
                        if not t:
                            break
                        k, _, v = t.decode("latin-1").partition(":")
                        r.trailers.append((k, v.strip()))
                    break
                left = size
                while left > 0:
                    if not self.buf and not self._fill():
                        r.body = b"".join(keep or [])
                        raise IncompleteResponse("connection closed in a chunk", r)
                    n = min(left, len(self.buf))
                    add(self._take(n))
                    left -= n
                if self._read_line() != b"":
                    raise ValueError("chunk not followed by CRLF")
        elif cl is not None:
            r.framing = "length"
            left = int(cl)
            while left > 0:
                if not self.buf and not self._fill():
                    r.body = b"".join(keep or [])
                    raise IncompleteResponse(f"connection closed with {left} of {cl} body bytes missing", r)
                n = min(left, len(self.buf))
                add(self._take(n))
                left -= n
        else:
            r.framing = "close"
            while True:
                if self.buf:
                    add(self._take(len(self.buf)))
                if not self._fill():
                    break
        if keep is not None:
            r.body = b"".join(keep)
        return r

    def request(self, method: str, target: str, headers=None, body: bytes | None = None,
                host: str | None = "example.test", **kw) -> Response:
        self.send(build_request(method, target, headers, body, host))
        return self.read_response(method, **kw)

    def get(self, target: str = "/", headers=None, host: str | None = "example.test", **kw) -> Response:
        return self.request("GET", target, headers, None, host, **kw)

    def read_until_close(self, limit: int = 1 << 24) -> bytes:
        """Everything until the peer closes (socket timeout applies)."""
        while len(self.buf) < limit and self._fill():
            pass
        return self._take(len(self.buf))

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True if the peer closes (EOF or reset) within timeout with no further data
        (buffered bytes count as data)."""
        if self.buf:
            return False
        if self.eof:
            return True
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
            if chunk:
                self.buf += chunk
                return False
            self.eof = True
            return True
        except ConnectionResetError:
            self.eof = True
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(old)

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """True if the peer closes within timeout, discarding any data it sends first."""
        deadline = time.monotonic() + timeout
        old = self.sock.gettimeout()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                except socket.timeout:
                    return False
                if not chunk:
                    self.eof = True
                    return True
        finally:
            self.sock.settimeout(old)


def http_request(port: int, method: str = "GET", target: str = "/", headers=None,
                 body: bytes | None = None, host: str | None = "example.test",
                 timeout: float = IO_TIMEOUT, **kw) -> Response:
    """One request on a new connection (closed afterwards)."""
    with HttpConn(port, timeout=timeout) as c:
        return c.request(method, target, headers, body, host, **kw)


def http_get(port: int, target: str = "/", headers=None, host: str | None = "example.test", **kw) -> Response:
    return http_request(port, "GET", target, headers, None, host, **kw)


def raw_exchange(port: int, data: bytes, timeout: float = 5.0, limit: int = 1 << 20) -> bytes:
    """Sends data, half-closes nothing, and returns everything received until the peer closes
    or timeout passes."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while len(out) < limit:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out


# ----------------------------------------------------------------------------------------------
# Admin endpoints


def admin_get(port: int, path: str) -> Response:
    return http_get(port, path, host=f"{HOST}:{port}")


def admin_backends(port: int) -> dict:
    r = admin_get(port, "/api/v1/backends")
    if r.status != 200:
        raise AssertionError(f"/api/v1/backends answered {r.status}: {r.text[:200]}")
    return json.loads(r.body)


def find_server(backends: dict, backend: str, server: str) -> dict:
    for b in backends["backends"]:
        if b["name"] == backend:
            for s in b["servers"]:
                if s["name"] == server:
                    return s
    raise KeyError(f"no server {backend}/{server} in {backends}")


def buffers(port: int) -> dict:
    """weir's buffer blocks: {"in_use": blocks held by all workers, "block_bytes": their size}."""
    return admin_backends(port)["buffers"]


class BufferWatch:
    """Samples weir's buffer blocks in use (admin /api/v1/backends, `buffers.in_use`) from a
    thread, on one keep-alive admin connection, until stop(): .peak is the most seen, .samples
    how many samples were taken, .block_bytes the block size. A context manager. (Every sample
    allocates in weir: under ASan, whose quarantine keeps freed memory a while, sampling much
    faster than every 10 ms shows as RSS growth of its own.)"""

    def __init__(self, admin_port: int, interval: float = 0.01):
        self.admin_port, self.interval = admin_port, interval
        self.peak = 0
        self.samples = 0
        self.block_bytes = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = HttpConn(self.admin_port, timeout=IO_TIMEOUT)
                r = conn.get("/api/v1/backends", host=f"{HOST}:{self.admin_port}")
                if r.status != 200:
                    raise AssertionError(f"/api/v1/backends answered {r.status}")
                b = json.loads(r.body)["buffers"]
                self.block_bytes = b["block_bytes"]
                self.peak = max(self.peak, b["in_use"])
                self.samples += 1
                if (r.header("Connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - reported by stop()
                self.errors.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
                if len(self.errors) > 100:
                    return
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def stop(self) -> int:
        """Stops sampling; returns the peak. Fails if sampling failed or saw nothing."""
        self._stop.set()
        self._thread.join(IO_TIMEOUT + 5)
        if self.samples == 0:
            raise AssertionError(f"no buffer sample taken: {self.errors[:3]}")
        return self.peak

    def close(self):
        """Stops sampling (a cleanup; raises nothing)."""
        self._stop.set()
        self._thread.join(IO_TIMEOUT + 5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def backend_requests(port: int, backend: str | None = None) -> int:
    """Sum of requests_total over the servers (of one backend, or of all)."""
    total = 0
    for b in admin_backends(port)["backends"]:
        if backend is None or b["name"] == backend:
            total += sum(s["requests_total"] for s in b["servers"])
    return total


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    """Parsed Prometheus text: samples as (name, {labels}, value)."""

    def __init__(self, text: str):
        self.text = text
        self.samples = []
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            if not m:
                raise ValueError(f"bad metrics line {line!r}")
            labels = dict(_LABEL.findall(m.group(3) or ""))
            self.samples.append((m.group(1), labels, float(m.group(4))))

    def get(self, name: str, **labels) -> float:
        """Sum of the samples named name whose labels include the given ones (0 if none)."""
        return sum(v for n, ls, v in self.samples
                   if n == name and all(ls.get(k) == str(want) for k, want in labels.items()))

    def has(self, name: str, **labels) -> bool:
        return any(n == name and all(ls.get(k) == str(want) for k, want in labels.items())
                   for n, ls, _ in self.samples)


def metrics(port: int) -> Metrics:
    r = admin_get(port, "/metrics")
    if r.status != 200:
        raise AssertionError(f"/metrics answered {r.status}")
    return Metrics(r.text)


# ----------------------------------------------------------------------------------------------
# Tiny Python backends (threads in the test process) for behaviours whoami cannot show


class ScriptedServer:
    """A loopback TCP server; handler(conn_socket) runs in a thread per connection.
    Stops (and closes every connection) at cleanup."""

    def __init__(self, handler):
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.address = f"{HOST}:{self.port}"
        self.accepted = 0
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(IO_TIMEOUT)
            with self._lock:
                self.accepted += 1
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self.handler(c)
        except Exception:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def stop(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    c.close()
                except OSError:
                    pass
        self._thread.join(timeout=5)


def read_request_head(c: socket.socket, limit: int = 1 << 16) -> bytes:
    """Reads from c until the end of a request head; returns the head ('' at EOF)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(65536)
        if not chunk:
            return b""
        data += chunk
        if len(data) > limit:
            break
    return data


# ----------------------------------------------------------------------------------------------
# Environments: processes and servers that are always cleaned up


class Env:
    """A temp dir plus helpers that start processes/servers and register their cleanup with
    add_cleanup (a TestCase's addCleanup, or addClassCleanup for per-class fixtures)."""

    def __init__(self, add_cleanup):
        if not os.access(WEIR_BIN, os.X_OK):
            raise AssertionError(f"weir binary not found at {WEIR_BIN} (set WEIR_BIN)")
        self._add_cleanup = add_cleanup
        self.tmp = tempfile.mkdtemp(prefix="weir-e2e-")
        add_cleanup(shutil.rmtree, self.tmp, True)
        self._names: dict[str, int] = {}

    def _unique(self, name: str) -> str:
        n = self._names.get(name, 0)
        self._names[name] = n + 1
        return name if n == 0 else f"{name}.{n}"

    def spawn(self, args: list[str], name: str = "proc", env: dict | None = None,
              stop_timeout: float = 10.0, expect_exit: int | None = ...) -> Proc:
        """Starts a process that cleanup stops (SIGTERM, SIGKILL after stop_timeout) and checks
        (Proc.finish: exit status, sanitizer reports)."""
        p = Proc(args, self._unique(name), self.tmp, env, expect_exit)
        self._add_cleanup(p.finish, stop_timeout)
        return p

    def run_weir(self, *args: str, timeout: float = 30.0, input: bytes | None = None):
        """Runs `weir ARGS` to completion in the temp dir; returns the CompletedProcess
        (stdout/stderr as bytes)."""
        p = subprocess.run([WEIR_BIN, *args], capture_output=True, timeout=timeout, input=input,
                           preexec_fn=_pdeathsig, cwd=self.tmp)
        check_sanitizers(p.stderr, f"`weir {' '.join(args)}`")
        return p

    def start_whoami(self, name: str = "whoami", delay: str | None = None, port: int | None = None) -> Whoami:
        for attempt in range(3):
            p_port = port or free_port()
            args = [WEIR_BIN, "whoami", "--listen", f"{HOST}:{p_port}", "--name", name]
            if delay:
                args += ["--delay", delay]
            p = self.spawn(args, f"whoami-{name}")
            try:
                wait_port(p_port, p)
                return Whoami(p, p_port, name)
            except AssertionError:
                if port is None and p.returncode() == 3 and attempt < 2:
                    p.expect(3)
                    continue  # lost a race for the port
                raise
        raise AssertionError("unreachable")

    def start_server(self, handler) -> ScriptedServer:
        s = ScriptedServer(handler)
        self._add_cleanup(s.stop)
        return s

    def write_config(self, cfg, filename: str = "weir.yaml") -> str:
        path = os.path.join(self.tmp, filename)
        text = cfg if isinstance(cfg, str) else to_yaml(cfg) + "\n"
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_weir(self, cfg, port: int | None = None, admin_port: int | None = None,
                   wait: bool = True, filename: str = "weir.yaml", stop_timeout: float = 40.0) -> Weir:
        """`weir run -c FILE` with cfg (a dict or YAML text). port / admin_port are what to wait
        for; by default taken from a dict config (the first listener's first address, admin)."""
        if isinstance(cfg, dict):
            if port is None and cfg.get("listeners"):
                listen = cfg["listeners"][0]["listen"]
                listen = listen[0] if isinstance(listen, list) else listen
                port = int(str(listen).rsplit(":", 1)[1])
            if admin_port is None and cfg.get("admin"):
                admin_port = int(cfg["admin"]["listen"].rsplit(":", 1)[1])
        path = self.write_config(cfg, filename)
        p = self.spawn([WEIR_BIN, "run", "-c", path], "weir", stop_timeout=stop_timeout)
        w = Weir(p, path, port, admin_port)
        if wait:
            for q in (port, admin_port):
                if q is not None:
                    wait_port(q, p)
            # Listeners are bound before the log says it runs: wait for that too.
            p.wait_log(r"running with \d+ worker")
        return w

    def start_lb(self, servers, **kw) -> Weir:
        """weir with lb_config(fresh port, servers, admin on a fresh port, **kw)."""
        cfg = lb_config(free_port(), servers, admin_port=free_port(), **kw)
        return self.start_weir(cfg)


class WeirTestCase(unittest.TestCase):
    """Each test gets self.env (an Env cleaned up after the test) and its helpers as methods."""

    maxDiff = None

    def setUp(self):
        self.env = Env(self.addCleanup)
        self.tmp = self.env.tmp

    def spawn(self, *a, **kw) -> Proc:
        return self.env.spawn(*a, **kw)

    def run_weir(self, *a, **kw):
        return self.env.run_weir(*a, **kw)

    def start_whoami(self, *a, **kw) -> Whoami:
        return self.env.start_whoami(*a, **kw)

    def start_server(self, handler) -> ScriptedServer:
        return self.env.start_server(handler)

    def write_config(self, *a, **kw) -> str:
        return self.env.write_config(*a, **kw)

    def start_weir(self, *a, **kw) -> Weir:
        return self.env.start_weir(*a, **kw)

    def start_lb(self, *a, **kw) -> Weir:
        return self.env.start_lb(*a, **kw)

    def assertWhoami(self, resp: Response, name: str | None = None, status: int = 200):
        self.assertEqual(resp.status, status, f"unexpected status: {resp!r} {resp.text[:300]!r}")
        if name is not None:
            self.assertEqual(resp.whoami_name(), name, resp.text[:300])


def run_threads(fn, n: int, timeout: float = 60.0):
    """Runs fn(i) in n threads; returns their results, re-raising the first exception."""
    results = [None] * n
    errors = []

    def wrap(i):
        try:
            results[i] = fn(i)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in ts):
        raise AssertionError(f"threads still running after {timeout}s")
    if errors:
        raise errors[0]
    return results


# ----------------------------------------------------------------------------------------------
# Helpers for the balancing, health, limits and tcp-mode tests


def http_conn_from(port: int, source_ip: str, timeout: float = IO_TIMEOUT) -> HttpConn:
    """An HttpConn to HOST:port whose socket is bound to source_ip (e.g. 127.0.0.7) first, so
    that weir sees a different client IP."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.bind((source_ip, 0))
        s.connect((HOST, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        s.close()
        raise
    c = HttpConn.__new__(HttpConn)
    c.sock = s
    c.buf = bytearray()
    c.eof = False
    return c


def set_whoami_health(whoami, status: int):
    """POST /healthz STATUS straight to a whoami backend (what its GET /healthz answers next)."""
    r = http_request(whoami.port, "POST", "/healthz", body=str(status).encode(), host=whoami.address)
    if r.status != 200:
        raise AssertionError(f"POST /healthz {status} answered {r.status}: {r.text[:200]}")


def closed_without_bytes(sock: socket.socket, timeout: float = 5.0):
    """Reads sock until EOF/reset or timeout. Returns (closed, data): closed is True if the
    peer closed (EOF or reset) within timeout."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, data
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return True, data
        except socket.timeout:
            return False, data
        if not chunk:
            return True, data
        data += chunk
