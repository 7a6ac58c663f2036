#!/usr/bin/python3
"""Failures under chaos: servers killed and restarted, and the proxy reloaded, under load.

    /usr/bin/python3 bench/chaos.py --weir build/release/weir [--proxies weir,haproxy]
        [--duration 25] [--seed 1] [--json] [--log-level info|debug] [--out DIR]

The chaos of issue 10, against one proxy at a time (the same seeded schedule for each):

  - 4 backends, each `weir whoami --listen 127.0.0.1:PORT --name sN` (s1..s4);
  - the proxy in front of them: round robin, 2 retries, an HTTP health check of GET /healthz
    every 200 ms (timeout 200 ms, rise 2, fall 2), keep-alive on both sides, one worker/thread;
  - load: `wrk -t2 -c20 -d<duration>s --timeout 2s` (20 keep-alive connections) on GET /;
  - every --kill-period (2.5 s; first at 2.5 s): one server, picked by random.Random(seed), is
    killed with SIGKILL; after --downtime (1.0 s) it is started again on the same port, and the
    driver waits until it answers GET /healthz (its time to listen is recorded);
  - weir only: every --reload-period (4 s; first at 4 s) SIGHUP, with the config unchanged (each
    reload must log "reload: ... applied"). HAProxy is not reloaded, as in the issue; with
    --haproxy-reloads it runs in master-worker mode (-W) and gets SIGUSR2 on the same schedule.

Failures = wrk's non-2xx/3xx responses + its socket errors (connect, read, write, timeout);
the failure rate is failures / wrk's request count (wrk counts completed responses, whatever
their status; a socket error is not a request to wrk), the arithmetic of the issue. wrk's
"timeout" is its own count: each 2 s check adds one per connection whose request is older than
--timeout (a stuck request can count more than once).

Breakdown: weir's /metrics at the end (weir_requests_total by code, requests per server,
upstream connects) and its log (messages counted by kind; WEIR_LOG=--log-level); HAProxy's
`show stat` on its stats socket (responses by class, econ, eresp, retries, redispatches,
per-server requests and check downs) and its log (`option dontlog-normal`: only requests with an
error, a 5xx, a retry or a redispatch are logged, plus server state changes). Both are also
sampled every --sample seconds (0.1) during the run: the timeline puts each increase of the
proxy's own error count next to the last kill and the last reload before it.

Everything runs on 127.0.0.1, on ports below the ephemeral range (a restarted server must find
its port free). With 2+ CPUs and without --no-pin (or BENCH_NO_PIN=1) the proxy runs alone on
the first CPU and wrk plus the backends on the second, as in bench/run.sh. Every process is
started by this script and stopped by its pid (SIGTERM, then SIGKILL); every step has a time
limit; the work directory (configs, logs) is removed unless --out keeps it.

Importable (bench/bench.py scenario 11, tests/e2e/test_chaos.py): run(proxy, weir_bin, **opts)
-> dict for one proxy; measure(weir_bin, proxies, **opts) -> {"params", "results"};
summary_lines(res), markdown_lines(res). Standard library only (Debian's /usr/bin/python3).
"""

import argparse
import csv
import ctypes
import datetime
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"
PROXIES = ["weir", "haproxy"]  # nginx open source has no active health checks

DEFAULTS = {
    "duration": 25.0,       # seconds of load
    "seed": 1,              # random.Random(seed) picks the server killed in each period
    "servers": 4,
    "kill_period": 2.5,     # one SIGKILL every period, the first after one period
    "downtime": 1.0,        # from the SIGKILL to the restart on the same port
    "reload_period": 4.0,   # weir: SIGHUP every period, the first after one period
    "conns": 20,            # wrk -c
    "threads": 2,           # wrk -t
    "wrk_timeout": 2.0,     # wrk --timeout, seconds
    "workers": 1,           # weir `workers:`, HAProxy `nbthread`
    "sample": 0.1,          # seconds between two samples of the proxy's counters
    "log_level": "info",    # WEIR_LOG
    "haproxy_reloads": False,
    "pin": True,
}

HEALTH = {"interval_ms": 200, "timeout_ms": 200, "rise": 2, "fall": 2}
RETRIES = 2


def _log_stderr(msg):
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes

_libc = None


def _pdeathsig():
    """Child side of every Popen: die with this process (nothing outlives a killed driver)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def cpu_sets(pin):
    """(proxy CPU, load CPU) as bench.py: the proxy alone on the first CPU, the rest on the
    second; (None, None) without pinning or with fewer than 2 CPUs."""
    if not pin or os.environ.get("BENCH_NO_PIN") == "1" or not shutil.which("taskset"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return str(cpus[0]), str(cpus[1])


def pinned(cmd, cpu):
    return (["taskset", "-c", cpu] + cmd) if cpu is not None else cmd


class Child:
    """A process we started, output appended to a log file; stopped only by its own pid."""

    def __init__(self, args, logpath, env=None):
        self.args = args
        self.logpath = logpath
        with open(logpath, "ab") as out:
            self.popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, env=env,
                                          preexec_fn=_pdeathsig, close_fds=True)
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.popen.poll() is None:
            os.kill(self.pid, sig)

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after timeout; returns the exit status."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
            except OSError:
                pass
        return self.popen.returncode


def free_ports(n):
    """n free ports below the ephemeral range (32768+): a killed server's port stays free for
    its restart, no outgoing connection of this machine can take it meanwhile (as bench.py)."""
    rng = random.Random()
    socks, ports = [], []
    try:
        for _ in range(20000):
            if len(ports) == n:
                break
            port = rng.randrange(20000, 32000)
            if port in ports:
                continue
            s = socket.socket()
            try:
                s.bind((HOST, port))
            except OSError:
                s.close()
                continue
            socks.append(s)
            ports.append(port)
    finally:
        for s in socks:
            s.close()
    if len(ports) < n:
        raise RuntimeError("no free ports in 20000-32000")
    return ports


def http_get(port, path="/", timeout=2.0):
    """One GET on a new connection; (status, body) or raises OSError/ValueError."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
                  .encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"bad status line {line!r}")
    return int(parts[1]), body


def wait_until(pred, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def port_answers(port, path=None):
    try:
        if path is None:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        return http_get(port, path, timeout=1.0)[0] == 200
    except (OSError, ValueError):
        return False


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------- backends

class Backends:
    """The whoami servers s1..sN on fixed ports: start, SIGKILL, restart on the same port."""

    def __init__(self, weir_bin, ports, tmp, cpu):
        self.weir_bin, self.ports, self.tmp, self.cpu = weir_bin, ports, tmp, cpu
        self.names = [f"s{i + 1}" for i in range(len(ports))]
        self.procs = [None] * len(ports)
        self.generation = [0] * len(ports)

    def _spawn(self, i):
        self.generation[i] += 1
        logp = os.path.join(self.tmp, f"{self.names[i]}.log")
        cmd = pinned([self.weir_bin, "whoami", "--listen", f"{HOST}:{self.ports[i]}", "--name",
                      self.names[i]], self.cpu)
        self.procs[i] = Child(cmd, logp)
        return self.procs[i]

    def start(self, i, timeout=10.0):
        """Starts server i and waits until it answers GET /healthz 200. A bind that fails
        (exit 3: the port not free yet) is retried until the deadline. Returns seconds taken."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            p = self._spawn(i)
            while time.monotonic() < deadline:
                if port_answers(self.ports[i], "/healthz"):
                    return time.monotonic() - t0
                if not p.alive():
                    break
                time.sleep(0.01)
            if p.alive() or time.monotonic() >= deadline:
                p.stop(2)
                raise RuntimeError(f"{self.names[i]} did not answer on :{self.ports[i]} within "
                                   f"{timeout:g} s: {tail(p.logpath, 3).strip()}")
            time.sleep(0.05)  # exited (e.g. the port still taken): try again

    def kill(self, i):
        """SIGKILL server i; returns its exit status (-9 expected: it was running)."""
        p = self.procs[i]
        if p is None:
            return None
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            return p.popen.wait(5)
        except subprocess.TimeoutExpired:
            return None

    def stop_all(self):
        for p in self.procs:
            if p is not None:
                p.stop(5)


# --------------------------------------------------------------------------- proxies

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            try:
                out.append((m.group(1), dict(_LABEL.findall(m.group(3) or "")),
                            float(m.group(4))))
            except ValueError:
                pass
    return out


def _is_failure_code(code):
    return not (str(code).startswith("2") or str(code).startswith("3"))


def _minus(s, base):
    """A sample's counters minus those of an earlier one (server_up and gauges kept)."""
    out = dict(s)
    out["codes"] = {c: v - base["codes"].get(c, 0) for c, v in s["codes"].items()}
    out["server_requests"] = {k: v - base["server_requests"].get(k, 0)
                              for k, v in s["server_requests"].items()}
    out["other"] = {k: (v if k == "weir_connections_open" else v - base["other"].get(k, 0))
                    for k, v in s["other"].items()}
    out["failures"] = s["failures"] - base["failures"]
    return out


class WeirProxy:
    name = "weir"

    def __init__(self, weir_bin, tmp, port, server_ports, names, opts, cpu):
        self.weir_bin, self.tmp, self.port, self.opts, self.cpu = weir_bin, tmp, port, opts, cpu
        self.admin_port = free_ports(1)[0]
        while self.admin_port in server_ports or self.admin_port == port:
            self.admin_port = free_ports(1)[0]
        self.conf = os.path.join(tmp, "weir.yaml")
        self.logpath = os.path.join(tmp, "weir.log")
        h = HEALTH
        servers = "\n".join(f"      - {{ address: {HOST}:{p}, name: {n} }}"
                            for p, n in zip(server_ports, names))
        self.config_text = f"""workers: {opts['workers']}
admin:
  listen: {HOST}:{self.admin_port}
limits:
  drain_timeout: 2s
listeners:
  - name: chaos
    listen: {HOST}:{port}
    backend: web
backends:
  - name: web
    balance: round_robin
    retries: {RETRIES}
    health_check:
      type: http
      path: /healthz
      interval: {h['interval_ms']}ms
      timeout: {h['timeout_ms']}ms
      rise: {h['rise']}
      fall: {h['fall']}
    timeouts: {{ connect: 2s, response: 30s }}
    servers:
{servers}
"""
        with open(self.conf, "w") as f:
            f.write(self.config_text)
        self.proc = None

    def start(self):
        env = dict(os.environ)
        env["WEIR_LOG"] = self.opts["log_level"]
        self.proc = Child(pinned([self.weir_bin, "run", "-c", self.conf], self.cpu), self.logpath,
                          env)
        ok = wait_until(lambda: not self.proc.alive() or (
            port_answers(self.port, "/") and port_answers(self.admin_port, "/healthz") and
            "running with" in tail(self.logpath, 50)), 20)
        if not ok or not self.proc.alive():
            raise RuntimeError(f"weir did not start: {tail(self.logpath, 5).strip()}")

    def reload(self):
        self.proc.signal(signal.SIGHUP)

    def sample(self):
        """The counters the timeline follows: responses by code, per-server requests and up."""
        st, body = http_get(self.admin_port, "/metrics", timeout=1.0)
        if st != 200:
            raise ValueError(f"/metrics answered {st}")
        codes, srv_req, srv_up, other = {}, {}, {}, {}
        for n, labels, v in parse_prometheus(body.decode("utf-8", "replace")):
            if n == "weir_requests_total":
                c = labels.get("code", "?")
                codes[c] = codes.get(c, 0) + int(v)
            elif n == "weir_server_requests_total":
                srv_req[labels.get("server", "?")] = int(v)
            elif n == "weir_server_up":
                srv_up[labels.get("server", "?")] = int(v)
            elif n in ("weir_upstream_connects_total", "weir_upstream_reuses_total",
                       "weir_connections_accepted_total", "weir_connections_open"):
                other[n] = int(v)
        return {"codes": codes, "server_requests": srv_req, "server_up": srv_up,
                "failures": sum(v for c, v in codes.items() if _is_failure_code(c)),
                "other": other}

    def final(self, res, baseline):
        """Adds the end-of-run breakdown (counters minus those before the load): metrics,
        reload count, log summary."""
        try:
            s = _minus(self.sample(), baseline)
            res["metrics"] = {"requests_total_by_code": s["codes"],
                              "server_requests_total": s["server_requests"],
                              "server_up": s["server_up"], **s["other"]}
        except (OSError, ValueError) as e:
            res["metrics"] = {"error": str(e)}
        text = tail(self.logpath, 1 << 30)
        res["reloads_applied"] = len(re.findall(r"reload: .* applied", text))
        res["reloads_refused"] = len(re.findall(r"reload: .*keeping the running config", text))
        res["log"] = summarize_weir_log(text, res["t0_wall"])

    def stop(self):
        return self.proc.stop(10) if self.proc else None


class HaproxyProxy:
    name = "haproxy"

    def __init__(self, weir_bin, tmp, port, server_ports, names, opts, cpu):
        self.tmp, self.port, self.opts, self.cpu = tmp, port, opts, cpu
        self.conf = os.path.join(tmp, "haproxy.cfg")
        self.sock = os.path.join(tmp, "haproxy.sock")
        self.sock_dir = None
        if len(self.sock) > 100:  # a Unix socket path has at most 107 bytes
            self.sock_dir = tempfile.mkdtemp(prefix="weir-chaos-")
            self.sock = os.path.join(self.sock_dir, "haproxy.sock")
        self.logpath = os.path.join(tmp, "haproxy.log")
        h = HEALTH
        servers = "\n".join(f"  server {n} {HOST}:{p} check" for p, n in zip(server_ports, names))
        # master-worker (-W) only for the reloads: the master passes the listening sockets to
        # the new worker; the old one finishes its requests and closes its connections.
        self.config_text = f"""global
  nbthread {opts['workers']}
  maxconn 2000
  pidfile {tmp}/haproxy.pid
  stats socket {self.sock} mode 600 level admin expose-fd listeners
  log stderr format raw local0 info

defaults
  mode http
  log global
  option httplog
  option dontlog-normal
  option http-keep-alive
  option redispatch
  retries {RETRIES}
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s
  timeout http-request 10s

frontend chaos
  bind {HOST}:{port}
  default_backend web

backend web
  balance roundrobin
  option httpchk GET /healthz
  default-server inter {h['interval_ms']}ms rise {h['rise']} fall {h['fall']}
{servers}
"""
        with open(self.conf, "w") as f:
            f.write(self.config_text)
        self.proc = None
        self.names = names

    def start(self):
        cmd = ["haproxy", "-db", "-f", self.conf]
        if self.opts["haproxy_reloads"]:
            cmd = ["haproxy", "-W", "-db", "-f", self.conf]
        self.proc = Child(pinned(cmd, self.cpu), self.logpath)
        # a GET, not a bare connect: HAProxy counts a connection closed without a request as
        # a 400 (CR--), which would show in its error counts
        ok = wait_until(lambda: not self.proc.alive() or (
            os.path.exists(self.sock) and port_answers(self.port, "/")), 20)
        if not ok or not self.proc.alive():
            raise RuntimeError(f"haproxy did not start: {tail(self.logpath, 5).strip()}")

    def reload(self):
        self.proc.signal(signal.SIGUSR2)  # master-worker mode only

    def show_stat(self):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(self.sock)
            s.sendall(b"show stat\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        text = data.decode("utf-8", "replace").lstrip("# ")
        return list(csv.DictReader(io.StringIO(text)))

    @staticmethod
    def _int(row, key):
        try:
            return int(row.get(key) or 0)
        except ValueError:
            return 0

    def sample(self):
        rows = self.show_stat()
        codes, srv_req, srv_up, other = {}, {}, {}, {}
        for r in rows:
            if r.get("pxname") == "chaos" and r.get("svname") == "FRONTEND":
                for k in ("1xx", "2xx", "3xx", "4xx", "5xx", "other"):
                    codes[k] = self._int(r, f"hrsp_{k}")
            elif r.get("pxname") == "web" and r.get("svname") == "BACKEND":
                for k in ("econ", "eresp", "wretr", "wredis", "cli_abrt", "srv_abrt"):
                    other[f"backend_{k}"] = self._int(r, k)
            elif r.get("pxname") == "web" and r.get("svname") in self.names:
                srv_req[r["svname"]] = self._int(r, "stot")
                srv_up[r["svname"]] = 1 if str(r.get("status", "")).startswith("UP") else 0
        # 4xx left out of the timeline's failures: HAProxy counts a connection closed without a
        # request (wrk's address check) as a 400, and sends no other 4xx to wrk's valid GETs
        return {"codes": codes, "server_requests": srv_req, "server_up": srv_up,
                "failures": sum(v for c, v in codes.items()
                                if _is_failure_code(c) and c != "4xx"),
                "other": other}

    def final(self, res, baseline):
        try:
            rows = self.show_stat()
            keep = ("stot", "hrsp_2xx", "hrsp_5xx", "econ", "eresp", "wretr", "wredis",
                    "cli_abrt", "srv_abrt", "chkfail", "chkdown", "status")
            per = {}
            for r in rows:
                if r.get("pxname") in ("chaos", "web"):
                    per[f"{r['pxname']}/{r['svname']}"] = {k: r.get(k) for k in keep
                                                           if r.get(k) not in (None, "")}
            s = _minus(self.sample(), baseline)
            res["metrics"] = {"responses_by_class": s["codes"],
                              "server_requests_total": s["server_requests"], **s["other"],
                              "show_stat": per}
        except (OSError, ValueError) as e:
            res["metrics"] = {"error": str(e)}
        res["log"] = summarize_haproxy_log(tail(self.logpath, 1 << 30))
        if self.opts["haproxy_reloads"]:
            res["metrics"]["note"] = "counters of the last worker only (reloaded)"

    def stop(self):
        rc = self.proc.stop(10) if self.proc else None
        if self.sock_dir:
            shutil.rmtree(self.sock_dir, ignore_errors=True)
        return rc


# --------------------------------------------------------------------------- logs

_WEIR_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z (\w+)\s+(.*)$")


def _normalize(msg):
    """A log message with its variable parts (numbers, ports, paths) folded, to count kinds."""
    msg = re.sub(r"/\S+\.yaml", "FILE", msg)
    msg = re.sub(r"\d+", "N", msg)
    return msg[:160]


def summarize_weir_log(text, t0_wall):
    """Counts of weir's log messages by level and kind, and the times (s from the start of the
    load) of the WARN/ERROR lines and of the health transitions."""
    kinds, events = {}, []
    for line in text.splitlines():
        m = _WEIR_LINE.match(line)
        if not m:
            if line.strip():
                k = "OTHER " + _normalize(line.strip())
                kinds[k] = kinds.get(k, 0) + 1
            continue
        level, msg = m.group(2), m.group(3)
        k = f"{level} {_normalize(msg)}"
        kinds[k] = kinds.get(k, 0) + 1
        if level in ("WARN", "ERROR") or " UP: " in msg or msg.startswith("reload:"):
            try:
                ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
                events.append((round(ts - t0_wall, 3), level, msg[:200]))
            except ValueError:
                pass
    return {"kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
            "events": events[:500]}


def summarize_haproxy_log(text):
    """HAProxy with dontlog-normal logs only abnormal requests: count them by status and
    termination state (e.g. "503 SC--": no server could be reached), plus server state
    changes and alerts."""
    kinds = {}
    for line in text.splitlines():
        # httplog: ... srv_name Tq/Tw/Tc/Tr/Ta status bytes - - TERM ... "GET / HTTP/1.1"
        m = re.search(r" (\S+)/(\S+) (-?\d+)/(-?\d+)/(-?\d+)/(-?\d+)/\+?(-?\d+) (-?\d+) \+?\d+ "
                      r"\S+ \S+ (\S{4}) \d+/\d+/\d+/\d+/\+?(\d+) ", line)
        if m:
            retries = int(m.group(10))
            k = (f"request: status {m.group(8)}, termination {m.group(9)}, "
                 f"{'retried' if retries else 'no retry'}")
        elif "Server " in line and (" is DOWN" in line or " is UP" in line):
            if line.startswith("["):
                continue  # -db prints each state change twice: as a warning and as a log line
            k = "server " + ("DOWN" if " is DOWN" in line else "UP")
        elif line.strip():
            k = "other: " + _normalize(line.strip())[:120]
        else:
            continue
        kinds[k] = kinds.get(k, 0) + 1
    return {"kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1]))}


# --------------------------------------------------------------------------- wrk

def parse_wrk(text):
    """wrk's summary: requests, duration, non-2xx/3xx, socket errors (zero when not printed),
    and, from bench/wrk/report.lua's JSON line, the latency percentiles."""
    out = {"requests": None, "non2xx3xx": 0,
           "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
        out["duration_s"] = float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0,
                                                 "m": 60.0}[m.group(3)]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                        map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non2xx3xx"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"^JSON:(.*)$", text, re.M)
    if m:
        try:
            j = json.loads(m.group(1))
            out["p50_ms"] = j["p50_us"] / 1000.0
            out["p99_ms"] = j["p99_us"] / 1000.0
            out["max_ms"] = j["max_us"] / 1000.0
        except (ValueError, KeyError):
            pass
    return out


# --------------------------------------------------------------------------- one run

class Sampler(threading.Thread):
    """proxy.sample() every `period` s into a timeline of (t from the load's start, sample)."""

    def __init__(self, proxy, t0, period):
        super().__init__(daemon=True)
        self.proxy, self.t0, self.period = proxy, t0, period
        self.timeline = []
        self.errors = 0
        self._halt = threading.Event()

    def run(self):
        nxt = time.monotonic()
        while not self._halt.is_set():
            try:
                s = self.proxy.sample()
                self.timeline.append((round(time.monotonic() - self.t0, 3), s))
            except (OSError, ValueError):
                self.errors += 1
            nxt += self.period
            self._halt.wait(max(0.0, nxt - time.monotonic()))

    def stop(self):
        self._halt.set()
        self.join(5)


def schedule(opts, proxy):
    """The chaos events, in time order: ("kill", t, server index), ("restart", t, index),
    ("reload", t, None). The same seed gives the same kills whatever the proxy."""
    rng = random.Random(opts["seed"])
    ev = []
    d, kp, down = opts["duration"], opts["kill_period"], opts["downtime"]
    k = 1
    # the restart comes at least 0.5 s before the end, so that it is seen back in rotation
    while kp > 0 and k * kp + down <= d - 0.5:
        i = rng.randrange(opts["servers"])
        ev.append(("kill", k * kp, i))
        ev.append(("restart", k * kp + down, i))
        k += 1
    reloads = proxy == "weir" or opts["haproxy_reloads"]
    j = 1
    while reloads and opts["reload_period"] > 0 and j * opts["reload_period"] < d - 0.25:
        ev.append(("reload", j * opts["reload_period"], None))
        j += 1
    order = {"kill": 0, "restart": 1, "reload": 2}
    return sorted(ev, key=lambda e: (e[1], order[e[0]]))


def _attribute(timeline, events):
    """Where the proxy's own error responses happened: each increase between two samples is
    put next to the last kill and the last reload before the sample (delays in s)."""
    kills = [e["t"] for e in events if e["kind"] == "kill"]
    reloads = [e["t"] for e in events if e["kind"] == "reload"]
    bursts = []
    prev = None
    for t, s in timeline:
        if prev is not None and s["failures"] > prev["failures"]:
            codes = {c: v - prev["codes"].get(c, 0) for c, v in s["codes"].items()
                     if _is_failure_code(c) and v > prev["codes"].get(c, 0)}
            lk = max((x for x in kills if x <= t), default=None)
            lr = max((x for x in reloads if x <= t), default=None)
            bursts.append({"t": t, "n": s["failures"] - prev["failures"], "codes": codes,
                           "since_kill": None if lk is None else round(t - lk, 2),
                           "since_reload": None if lr is None else round(t - lr, 2),
                           "up": dict(s["server_up"])})
        prev = s

    def histogram(key, edges):
        names = ([f"{lo:g}-{hi:g} s" for lo, hi in zip(edges, edges[1:])] +
                 [f">= {edges[-1]:g} s", "none before"])
        counts = dict.fromkeys(names, 0)
        for b in bursts:
            v = b[key]
            if v is None:
                name = "none before"
            else:
                name = next((f"{lo:g}-{hi:g} s" for lo, hi in zip(edges, edges[1:])
                             if lo <= v < hi), f">= {edges[-1]:g} s")
            counts[name] += b["n"]
        return {k: v for k, v in counts.items() if v}  # in time order

    return {"bursts": bursts,
            "by_time_since_kill": histogram("since_kill", [0, 0.25, 0.5, 1.0, 1.5, 2.0]),
            "by_time_since_reload": histogram("since_reload", [0, 0.25, 0.5, 1.0, 2.0])}


def _rotation_check(timeline, events, names):
    """For each restart: did the restarted server get requests before its next kill (or the
    end)? From the per-server request counters of the timeline."""
    out = []
    kills = [e for e in events if e["kind"] == "kill"]
    for e in events:
        if e["kind"] != "restart" or not e.get("ok"):
            continue
        name = names[e["server"]]
        nxt = min((k["t"] for k in kills if k["server"] == e["server"] and k["t"] > e["t"]),
                  default=float("inf"))
        before = [s["server_requests"].get(name, 0) for t, s in timeline if t <= e["t"]]
        after = [s["server_requests"].get(name, 0) for t, s in timeline if e["t"] < t <= nxt]
        served = (after[-1] - before[-1]) if before and after else None
        out.append({"server": name, "t": e["t"], "requests_until_next_kill": served})
    return out


def _bucket_order(name):
    """Sort key of the histogram buckets above: "0-0.25 s" < ... < ">= 2 s" < "none before"."""
    if name == "none before":
        return (2, 0.0)
    if name.startswith(">="):
        return (1, 0.0)
    return (0, float(name.split("-")[0]))


def run(proxy, weir_bin, workdir=None, logf=_log_stderr, **kw):
    """The chaos against one proxy ("weir" or "haproxy"); returns a dict of results.

    weir_bin runs the whoami backends (and weir itself). workdir: where configs and logs go
    (kept); without it, a temp dir that is removed. Options: see DEFAULTS."""
    opts = dict(DEFAULTS)
    unknown = set(kw) - set(opts)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}")
    opts.update(kw)
    if proxy not in PROXIES:
        raise ValueError(f"unknown proxy {proxy!r} (choose among {', '.join(PROXIES)})")
    weir_bin = os.path.abspath(weir_bin)
    if not os.access(weir_bin, os.X_OK):
        raise FileNotFoundError(f"weir binary not found: {weir_bin}")
    for tool in ["wrk"] + (["haproxy"] if proxy == "haproxy" else []):
        if not shutil.which(tool):
            raise FileNotFoundError(f"{tool} not installed (bash bench/deps.sh installs it)")
    proxy_cpu, load_cpu = cpu_sets(opts["pin"])
    own_tmp = workdir is None
    tmp = tempfile.mkdtemp(prefix="weir-chaos-") if own_tmp else workdir
    os.makedirs(tmp, exist_ok=True)
    n = opts["servers"]
    ports = free_ports(n + 1)
    port, server_ports = ports[0], ports[1:]
    backends = Backends(weir_bin, server_ports, tmp, load_cpu)
    cls = WeirProxy if proxy == "weir" else HaproxyProxy
    px = cls(weir_bin, tmp, port, server_ports, backends.names, opts, proxy_cpu)
    res = {"proxy": proxy, "params": {k: opts[k] for k in DEFAULTS}, "port": port,
           "server_ports": server_ports, "pinning": {"proxy_cpu": proxy_cpu,
                                                     "load_cpu": load_cpu},
           "health_check": dict(HEALTH), "retries": RETRIES, "workdir": tmp if not own_tmp
           else None}
    wrk = sampler = None
    events = []
    try:
        for i in range(n):
            backends.start(i)
        px.start()
        # every server up and answering through the proxy before the load
        if not wait_until(lambda: (lambda s: len(s["server_up"]) == n and
                                   all(s["server_up"].values()))(px.sample()), 10, 0.1):
            raise RuntimeError(f"{proxy}: not every server up 10 s after the start")
        st, body = http_get(port, "/", timeout=5)
        if st != 200 or not body.startswith(b"Name: s"):
            raise RuntimeError(f"{proxy}: GET / answered {st} {body[:80]!r}")
        res["config"] = px.config_text
        plan = schedule(opts, proxy)
        cmd = ["wrk", f"-t{opts['threads']}", f"-c{opts['conns']}",
               f"-d{opts['duration']:g}s", "--timeout", f"{opts['wrk_timeout']:g}s",
               "-s", os.path.join(HERE, "wrk", "report.lua"), f"http://{HOST}:{port}/"]
        res["wrk_cmd"] = " ".join(cmd)
        wrk_out = os.path.join(tmp, "wrk.txt")
        logf(f"{proxy}: {n} servers on :{','.join(map(str, server_ports))}, proxy on :{port}; "
             f"{sum(1 for e in plan if e[0] == 'kill')} kills, "
             f"{sum(1 for e in plan if e[0] == 'reload')} reloads in {opts['duration']:g} s "
             f"(seed {opts['seed']})")
        baseline = px.sample()  # counters before the load (start-up checks, the GET above)
        t0 = time.monotonic()
        res["t0_wall"] = time.time()
        with open(wrk_out, "w") as out:
            wrk = subprocess.Popen(pinned(cmd, load_cpu), stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, preexec_fn=_pdeathsig)
        sampler = Sampler(px, t0, opts["sample"])
        sampler.start()
        for kind, t, i in plan:
            delay = t0 + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if wrk.poll() is not None:
                raise RuntimeError(f"wrk exited early ({wrk.returncode}): {tail(wrk_out, 5)}")
            now = round(time.monotonic() - t0, 3)
            if kind == "kill":
                pid = backends.procs[i].pid
                rc = backends.kill(i)
                events.append({"kind": "kill", "t": now, "server": i, "pid": pid,
                               "exit": rc, "died": rc == -signal.SIGKILL})
            elif kind == "restart":
                try:
                    took = backends.start(i, timeout=5.0)
                    events.append({"kind": "restart", "t": now, "server": i, "ok": True,
                                   "pid": backends.procs[i].pid,
                                   "listening_after_ms": round(took * 1000, 1)})
                except RuntimeError as e:
                    events.append({"kind": "restart", "t": now, "server": i, "ok": False,
                                   "error": str(e)})
                    logf(f"{proxy}: restart of {backends.names[i]} failed: {e}")
            else:
                px.reload()
                events.append({"kind": "reload", "t": now})
            if not px.proc.alive():
                raise RuntimeError(f"{proxy} died (exit {px.proc.popen.returncode}) at "
                                   f"{now:.1f} s: {tail(px.logpath, 5)}")
        try:
            wrk.wait(max(5.0, opts["duration"] + 30 - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            wrk.kill()
            wrk.wait(5)
            raise RuntimeError("wrk did not finish in time")
        sampler.stop()
        time.sleep(0.3)  # the last responses counted, the last log lines written
        with open(wrk_out) as f:
            wrk_text = f.read()
        w = parse_wrk(wrk_text)
        res["wrk_output"] = wrk_text
        if w["requests"] is None:
            raise RuntimeError(f"wrk printed no summary (exit {wrk.returncode}): "
                               f"{wrk_text[-300:]}")
        se = w["socket_errors"]
        failures = w["non2xx3xx"] + sum(se.values())
        res.update({
            "requests": w["requests"], "failures": failures,
            "failure_pct": 100.0 * failures / w["requests"] if w["requests"] else None,
            "non2xx3xx": w["non2xx3xx"], "socket_errors": se,
            "rps": w.get("rps"), "p50_ms": w.get("p50_ms"), "p99_ms": w.get("p99_ms"),
            "max_ms": w.get("max_ms"), "events": events,
            "kills": sum(1 for e in events if e["kind"] == "kill"),
            "kills_died": sum(1 for e in events if e["kind"] == "kill" and e["died"]),
            "restarts": sum(1 for e in events if e["kind"] == "restart"),
            "restarts_ok": sum(1 for e in events if e["kind"] == "restart" and e["ok"]),
            "reloads": sum(1 for e in events if e["kind"] == "reload"),
            "proxy_alive": px.proc.alive(),
            "samples": len(sampler.timeline), "sample_errors": sampler.errors,
        })
        px.final(res, baseline)
        res["attribution"] = _attribute(sampler.timeline, events)
        res["rotation"] = _rotation_check(sampler.timeline, events, backends.names)
        res["timeline"] = [(t, s["failures"], s["server_up"]) for t, s in sampler.timeline]
        logf(f"{proxy}: " + one_line(res))
        return res
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        if wrk is not None and wrk.poll() is None:
            wrk.kill()
            wrk.wait(5)
        res["proxy_exit"] = px.stop()
        backends.stop_all()
        if own_tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def measure(weir_bin, proxies=("weir", "haproxy"), out_dir=None, logf=_log_stderr, **kw):
    """run() for each proxy in turn with the same options (and so the same kill schedule);
    out_dir keeps each proxy's configs and logs in out_dir/<proxy>/."""
    res = {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
           "weir_bin": os.path.abspath(weir_bin), "nproc": os.cpu_count(),
           "loadavg": open("/proc/loadavg").read().split()[:3], "results": {}}
    try:
        res["weir_version"] = subprocess.run([weir_bin, "version"], stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, text=True,
                                             timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        res["weir_version"] = "?"
    for p in proxies:
        wd = os.path.join(out_dir, p) if out_dir else None
        if wd and os.path.isdir(wd):
            shutil.rmtree(wd)
        try:
            res["results"][p] = run(p, weir_bin, workdir=wd, logf=logf, **kw)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            res["results"][p] = {"proxy": p, "failed": f"{type(e).__name__}: {e}"}
            logf(f"{p}: FAILED {e}")
    opts = dict(DEFAULTS)
    opts.update(kw)
    res["params"] = opts
    return res


# --------------------------------------------------------------------------- output

def _fmt_int(v):
    return "n/a" if v is None else f"{v:,}"


def one_line(r):
    if r.get("failed"):
        return "FAILED: " + r["failed"].splitlines()[0][:200]
    se = r["socket_errors"]
    return (f"{r['requests']:,} requests, {r['failures']:,} failures "
            f"({r['failure_pct']:.4f} %): non-2xx/3xx {r['non2xx3xx']:,}, socket errors "
            f"connect {se['connect']} read {se['read']} write {se['write']} "
            f"timeout {se['timeout']}; kills {r['kills_died']}/{r['kills']}, restarts "
            f"{r['restarts_ok']}/{r['restarts']}, reloads {r['reloads']}")


def _codes(r):
    m = r.get("metrics", {})
    codes = m.get("requests_total_by_code") or m.get("responses_by_class") or {}
    return ", ".join(f"{c}: {v:,}" for c, v in sorted(codes.items()) if v) or "n/a"


def summary_lines(res):
    """Plain text for the terminal and the e2e test's output."""
    L = []
    for p, r in res["results"].items():
        L.append(f"{p}: {one_line(r)}")
        if r.get("failed"):
            continue
        L.append(f"  rate {r['rps'] or 0:,.0f} req/s, p50 {r.get('p50_ms') or 0:.3f} ms, "
                 f"p99 {r.get('p99_ms') or 0:.3f} ms, max {r.get('max_ms') or 0:.1f} ms")
        L.append(f"  responses by code ({'/metrics' if p == 'weir' else 'show stat'}): "
                 f"{_codes(r)}")
        m = r.get("metrics", {})
        if p == "weir":
            if "reloads_applied" in r:
                L.append(f"  reloads applied {r['reloads_applied']}/{r['reloads']}"
                         + (f", refused {r['reloads_refused']}" if r["reloads_refused"] else ""))
            L.append(f"  requests per server: {m.get('server_requests_total')}; upstream "
                     f"connects {m.get('weir_upstream_connects_total')}, reuses "
                     f"{m.get('weir_upstream_reuses_total')}")
        else:
            L.append(f"  requests per server: {m.get('server_requests_total')}; backend econ "
                     f"{m.get('backend_econ')}, eresp {m.get('backend_eresp')}, retries "
                     f"{m.get('backend_wretr')}, redispatches {m.get('backend_wredis')}")
        a = r.get("attribution", {})
        if a.get("bursts"):
            L.append(f"  the proxy's error responses by time since the last kill: "
                     f"{a['by_time_since_kill']}; since the last reload: "
                     f"{a['by_time_since_reload']}")
        back = [x for x in r.get("rotation", []) if not x["requests_until_next_kill"]]
        L.append(f"  restarted servers back in rotation: "
                 f"{len(r.get('rotation', [])) - len(back)}/{len(r.get('rotation', []))}")
        kinds = list(r.get("log", {}).get("kinds", {}).items())
        if kinds:
            L.append("  log: " + "; ".join(f"{v}x {k}" for k, v in kinds[:8]))
    return L


def markdown_lines(res, heading="## Failures under chaos: server kills and reloads"):
    p = res["params"]
    L = [heading, ""]
    L.append(f"{res['date']}, {res['nproc']} CPUs, load average at start "
             f"{' '.join(res['loadavg'])}; weir: {res['weir_version']} (`{res['weir_bin']}`), "
             f"`workers: {p['workers']}` (HAProxy `nbthread {p['workers']}`); "
             + ("pinned: the proxy alone on one CPU, wrk and the backends on another"
                if p["pin"] and cpu_sets(True)[0] is not None else "not pinned") + ".")
    L.append("")
    L.append("| proxy | requests | failures | failure % | non-2xx/3xx | connect | read | write | "
             "timeout | responses by code | kills / restarts | reloads |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |")
    for name, r in res["results"].items():
        if r.get("failed"):
            L.append(f"| {name} | **failed**: {r['failed'].splitlines()[0][:120]} "
                     f"| | | | | | | | | | |")
            continue
        se = r["socket_errors"]
        rel = r["reloads"] if name == "weir" else (r["reloads"] or "none")
        L.append(f"| {name} | {_fmt_int(r['requests'])} | **{_fmt_int(r['failures'])}** | "
                 f"{r['failure_pct']:.4f} | {r['non2xx3xx']:,} | {se['connect']:,} | "
                 f"{se['read']:,} | {se['write']:,} | {se['timeout']:,} | {_codes(r)} | "
                 f"{r['kills_died']} / {r['restarts_ok']} | {rel} |")
    L.append("")
    L.append(f"{p['servers']} `weir whoami` backends, round robin, `retries {RETRIES}` (HAProxy "
             f"also `option redispatch`), HTTP health check every {HEALTH['interval_ms']} ms "
             f"(rise {HEALTH['rise']}, fall {HEALTH['fall']}); `wrk -t{p['threads']} "
             f"-c{p['conns']} -d{p['duration']:g}s`; every {p['kill_period']:g} s one backend "
             f"(seeded, seed {p['seed']}) gets SIGKILL and is restarted on its port "
             f"{p['downtime']:g} s later; weir gets SIGHUP every {p['reload_period']:g} s"
             + (", HAProxy SIGUSR2 (master-worker) as often" if p["haproxy_reloads"]
                else ", HAProxy is not reloaded") +
             ". Failures: wrk's non-2xx/3xx responses + socket errors; % of wrk's requests.")
    if "haproxy" in res["results"]:
        L.append(_WRK_PROBE_NOTE)
    for name, r in res["results"].items():
        a = r.get("attribution") or {}
        if a.get("bursts"):
            L.append(f"{name}'s own error responses by time since the last kill: "
                     + ", ".join(f"{k} {v}" for k, v in a["by_time_since_kill"].items())
                     + "; since the last reload: "
                     + ", ".join(f"{k} {v}" for k, v in a["by_time_since_reload"].items())
                     + ".")
    L.append("")
    return L


# --------------------------------------------------------------------------- bench.py scenario 11

_WRK_PROBE_NOTE = ("HAProxy's one 4xx per run is not a failure: wrk checks the address by "
                   "connecting and closing at once before its load (`wrk.connect` in its "
                   "`wrk.resolve`), which HAProxy counts and logs as a 400 `<BADREQ>` "
                   "`CR--`; wrk never sees it.")

CHAOS_SCENARIOS = [
    {"id": "s11", "kind": "chaos", "title": "11. chaos: failures under server kills and reloads"},
]
# what scenarios.json keeps of a run (the whole run goes to raw/.../chaos/<proxy>-rN/chaos.json)
_KEEP = ("requests", "failures", "failure_pct", "non2xx3xx", "socket_errors", "rps", "p50_ms",
         "p99_ms", "max_ms", "kills", "kills_died", "restarts", "restarts_ok", "reloads",
         "reloads_applied", "metrics", "attribution", "rotation", "proxy_alive", "params")


def run_phase(a, rundir, scenarios, out):
    """bench.py's scenario 11: rounds of weir then HAProxy (nginx has no active health
    checks), the same seed for both within a round (BENCH_CHAOS_SEED + round - 1); results go
    into out["scenarios"] like the other scenarios', with "errors" = failures."""
    import bench as B  # bench.py itself (see the end of bench.py)
    duration = float(os.environ.get("BENCH_CHAOS_DURATION", "10" if a.quick else "25"))
    seed0 = int(os.environ.get("BENCH_CHAOS_SEED", "1"))
    proxies = [p for p in B.SELECTED if p in PROXIES]
    for sc in scenarios:
        runs = {p: [] for p in proxies}
        for rnd in range(a.rounds):
            for p in proxies:
                tag = f"{sc['id']}-{p}-r{rnd + 1}"
                wd = os.path.join(rundir, "chaos", f"{p}-r{rnd + 1}")
                try:
                    r = run(p, a.weir, workdir=wd, logf=B.log, duration=duration,
                            seed=seed0 + rnd, pin=B.PROXY_CPU is not None)
                    with open(os.path.join(wd, "chaos.json"), "w") as f:
                        json.dump(r, f, indent=1)
                    r = {k: r[k] for k in _KEEP if k in r}
                    r["errors"] = r["failures"]
                    r["alive"] = r.get("proxy_alive", True)
                    if not r["alive"]:
                        r["failed"] = f"{p} died during the run"
                        r["crashed"] = True
                except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                    r = {"failed": f"{type(e).__name__}: {e}", "alive": False}
                B.log(f"{tag}: {one_line(r)}")
                runs[p].append(r)
                time.sleep(0.3)
        out["scenarios"][sc["id"]] = {
            "title": sc["title"], "kind": "chaos", "runs": runs,
            "spec": dict(sc, duration_s=duration, seed=seed0, servers=DEFAULTS["servers"],
                         kill_period=DEFAULTS["kill_period"], downtime=DEFAULTS["downtime"],
                         reload_period=DEFAULTS["reload_period"], conns=DEFAULTS["conns"],
                         threads=DEFAULTS["threads"], workers=DEFAULTS["workers"])}


def report_section(scen, notes):
    """The scenario 11 table of bench/results/latest.md: weir's and HAProxy's failures side by
    side, summed over the rounds; failed runs go into `notes` (the report's Failures list)."""
    sc = scen["scenarios"].get("s11")
    if not sc:
        return []
    s = sc["spec"]
    L = ["## Failures under chaos: server kills and reloads (scenario 11)", "",
         "| proxy | requests | failures | failure % | failures per round | non-2xx/3xx | "
         "connect | read | write | timeout | the proxy's error responses | req/s |",
         "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    by_kill = {}
    for name in PROXIES:
        runs = sc["runs"].get(name)
        if runs is None:
            continue
        good = [r for r in runs if not r.get("failed")]
        for r in runs:
            if r.get("failed"):
                notes.append(f"- {sc['title']} / {name}: {r['failed'].splitlines()[0][:160]}")
        req = sum(r["requests"] for r in good)
        fail = sum(r["failures"] for r in good)
        se = {k: sum(r["socket_errors"][k] for r in good)
              for k in ("connect", "read", "write", "timeout")}
        codes = {}
        for r in good:
            m = r.get("metrics", {})
            for c, v in (m.get("requests_total_by_code") or m.get("responses_by_class")
                         or {}).items():
                if _is_failure_code(c) and v:
                    codes[c] = codes.get(c, 0) + v
            for k, v in (r.get("attribution") or {}).get("by_time_since_kill", {}).items():
                by_kill.setdefault(name, {})
                by_kill[name][k] = by_kill[name].get(k, 0) + v
        per_round = ", ".join(str(r["failures"]) if not r.get("failed") else "failed"
                              for r in runs)
        if len(good) < len(runs):
            per_round += f" (**{len(runs) - len(good)}/{len(runs)} runs failed**)"
        rps = [r["rps"] for r in good if r.get("rps") is not None]
        rps = f"{statistics.median(rps):,.0f}" if rps else "n/a"
        L.append(f"| {name} | {req:,} | **{fail:,}** | "
                 f"{(100.0 * fail / req) if req else 0:.4f} | {per_round} | "
                 f"{sum(r['non2xx3xx'] for r in good):,} | {se['connect']:,} | {se['read']:,} | "
                 f"{se['write']:,} | {se['timeout']:,} | "
                 f"{', '.join(f'{c}: {v:,}' for c, v in sorted(codes.items())) or 'none'} | "
                 f"{rps} |")
    L.append("| nginx | not measured: open-source NGINX has no active health checks | | | | | "
             "| | | | | |")
    rounds = max((len(v) for v in sc["runs"].values()), default=0)
    L += ["",
          f"Issue 10's chaos, {rounds} round(s) of {s['duration_s']:g} s per proxy, weir then "
          f"HAProxy in each round with the same kill schedule (seed {s['seed']} + round − 1). "
          f"{s['servers']} `weir whoami` backends, round robin, retries 2 (HAProxy: "
          f"`option redispatch`), HTTP health check `GET /healthz` every "
          f"{HEALTH['interval_ms']} ms, rise {HEALTH['rise']}, fall {HEALTH['fall']}; "
          f"`wrk -t{s['threads']} -c{s['conns']}` (keep-alive); every {s['kill_period']:g} s one "
          f"backend gets SIGKILL and is restarted on its port {s['downtime']:g} s later; weir "
          f"gets SIGHUP every {s['reload_period']:g} s (config unchanged), HAProxy is not "
          f"reloaded (as in the issue). One worker / `nbthread 1`, pinned as above (the "
          f"backends share the load CPU with wrk). Failures: wrk's non-2xx/3xx responses + "
          f"socket errors (connect, read, write, timeout), summed over the rounds; failure % = "
          f"failures ÷ wrk's requests. *The proxy's error responses*: non-2xx/3xx counted by "
          f"the proxy itself (weir's `/metrics`, HAProxy's `show stat`) during the load. The "
          f"counts are small and vary from run to run (on 2 shared cores, by tens of %): "
          f"compare orders of magnitude. Details: `bench/chaos.py`, bench/README.md."]
    if "haproxy" in sc["runs"]:
        L.append(_WRK_PROBE_NOTE)
    for name, b in by_kill.items():
        L.append(f"{name}'s error responses by time since the last kill (sampled every "
                 f"{DEFAULTS['sample']:g} s): "
                 + ", ".join(f"{k} {b[k]:,}" for k in sorted(b, key=_bucket_order)) + ".")
    L.append("")
    return L


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # unwind: every `finally` stops what it started


def main():
    signal.signal(signal.SIGTERM, _terminate)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawTextHelpFormatter)
    d = DEFAULTS
    ap.add_argument("--weir", default=os.environ.get("WEIR_BIN", os.path.join(
        ROOT, "build/release/weir")), help="weir binary: the proxy and the whoami backends "
                                           "(default: $WEIR_BIN or build/release/weir)")
    ap.add_argument("--proxies", default="weir,haproxy", help="weir,haproxy or one of them")
    ap.add_argument("--duration", type=float, default=d["duration"], help="seconds of load (25)")
    ap.add_argument("--seed", type=int, default=d["seed"], help="kill schedule seed (1)")
    ap.add_argument("--servers", type=int, default=d["servers"])
    ap.add_argument("--kill-period", type=float, default=d["kill_period"])
    ap.add_argument("--downtime", type=float, default=d["downtime"])
    ap.add_argument("--reload-period", type=float, default=d["reload_period"])
    ap.add_argument("--conns", type=int, default=d["conns"])
    ap.add_argument("--threads", type=int, default=d["threads"])
    ap.add_argument("--workers", type=int, default=d["workers"],
                    help="weir workers / HAProxy nbthread (1)")
    ap.add_argument("--log-level", default=d["log_level"], choices=["debug", "info", "warn",
                                                                     "error"],
                    help="weir's WEIR_LOG (info shows warnings; debug every failed connect)")
    ap.add_argument("--haproxy-reloads", action="store_true",
                    help="reload HAProxy too (master-worker mode, SIGUSR2)")
    ap.add_argument("--no-pin", action="store_true", help="no CPU pinning")
    ap.add_argument("--out", help="directory kept with configs, logs, chaos.json, chaos.md "
                                  "(default: bench/results/raw/chaos-DATE)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the summary")
    a = ap.parse_args()
    proxies = [x.strip() for x in a.proxies.split(",") if x.strip()]
    bad = [x for x in proxies if x not in PROXIES]
    if bad or not proxies:
        sys.exit(f"chaos: unknown proxies {bad} (choose among {','.join(PROXIES)}; nginx has "
                 f"no active health checks)")
    out = a.out or os.path.join(HERE, "results", "raw",
                                "chaos-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    try:
        res = measure(a.weir, proxies, out_dir=out, duration=a.duration, seed=a.seed,
                      servers=a.servers, kill_period=a.kill_period, downtime=a.downtime,
                      reload_period=a.reload_period, conns=a.conns, threads=a.threads,
                      workers=a.workers, log_level=a.log_level,
                      haproxy_reloads=a.haproxy_reloads, pin=not a.no_pin)
    except FileNotFoundError as e:
        sys.exit(f"chaos: {e}")
    with open(os.path.join(out, "chaos.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(out, "chaos.md"), "w") as f:
        f.write("\n".join(markdown_lines(res)) + "\n")
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        print("\n".join(summary_lines(res)))
        print(f"\nconfigs, logs, chaos.json and chaos.md: {os.path.relpath(out)}")
    return 0 if all(not r.get("failed") for r in res["results"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
