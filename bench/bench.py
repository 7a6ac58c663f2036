#!/usr/bin/python3
"""weir benchmark harness: weir vs HAProxy vs NGINX, same origin, same machine, one run.

Standard library only (Debian's /usr/bin/python3). Entry points are the shell wrappers
bench/run.sh, bench/callgrind.sh and bench/syscalls.sh; see bench/README.md.

Subcommands:
  scenarios   run scenarios 1-15 on the three proxies, alternating A B C A B C ...
              (7-9, TLS and HTTP/2, live in bench/tls_scenarios.py; 11, failures under
              server kills and reloads, weir and HAProxy only, in bench/chaos.py; 12-15,
              compression and static files, in bench/edge_scenarios.py)
  callgrind   instructions per request of each proxy (valgrind --tool=callgrind)
  syscalls    system calls per request of each proxy (strace -c -f)
  report      rebuild latest.md / latest.png from the JSON files in the data directory
  idle-client, rate-client   load generators used internally (run pinned on the load CPU)
"""

import argparse
import collections
import datetime
import errno
import glob
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
PROXIES = ["weir", "haproxy", "nginx"]  # measured in this order, round after round
BASELINE = "haproxy"
# BENCH_PROXIES=haproxy,nginx measures a subset (e.g. while weir lacks a feature); the order
# stays the one above. Unknown names are rejected in main().
# BENCH_ACCESS_LOG=1: every proxy writes an access log line per request (weir JSON to a file,
# HAProxy's httplog to its stdout (a file), NGINX combined to a file, buffered like weir's), to
# measure what logging costs each of them (issue 11: weir's cost must stay within 10 % CPU per
# request in scenario 1).
ACCESS_LOG = os.environ.get("BENCH_ACCESS_LOG") == "1"
_WANTED = [p.strip() for p in os.environ.get("BENCH_PROXIES", "").split(",") if p.strip()]
SELECTED = [p for p in PROXIES if not _WANTED or p in _WANTED]
BODY_12 = "hello, weir!"  # the 12-byte body of the small responses
assert len(BODY_12) == 12
BIG_BYTES = 1 << 20
POST_BYTES = 64 << 10
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- CPU pinning

def cpu_sets():
    """Proxy on CPU 0; load generators and the origin on CPU 1 (if there are 2+ CPUs)."""
    if os.environ.get("BENCH_NO_PIN") == "1" or not shutil.which("taskset"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return str(cpus[0]), str(cpus[1])


PROXY_CPU, LOAD_CPU = cpu_sets()


def pin(cmd, cpu):
    return (["taskset", "-c", cpu] + cmd) if cpu is not None else cmd


# --------------------------------------------------------------------------- /proc helpers

def proc_cpu_ticks(pid):
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def proc_status_kib(pid, key):
    """A kB field of /proc/PID/status (VmRSS, VmHWM, RssAnon, ...); 0 if absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def proc_rss_kib(pid):
    return proc_status_kib(pid, "VmRSS")


def free_ports(n):
    """n free ports below the ephemeral range (32768+), so that the many short-lived client
    connections of the run can never take one of them between now and the bind."""
    import random
    rng = random.Random()
    socks, ports = [], []
    while len(ports) < n:
        port = rng.randrange(20000, 32000)
        if port in ports:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        socks.append(s)
        ports.append(port)
    for s in socks:
        s.close()
    return ports


def wait_port(port, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def http_get(port, path="/", timeout=5.0):
    """One HTTP/1.1 GET, returns (status, headers dict, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench.local\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def run_quiet(cmd, timeout=30):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
        return p.stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"({e})"


# --------------------------------------------------------------------------- the test bed

class Bed:
    """A temp dir with the origin (NGINX on two ports) and the three proxies' configs."""

    log_subdir = "logs"  # under the run's raw directory

    def __init__(self, weir_bin, data_dir):
        self.weir_bin = weir_bin
        self.data_dir = data_dir
        self.tmp = tempfile.mkdtemp(prefix="weir-bench-")
        (self.origin1, self.origin2, self.port_weir, self.port_haproxy,
         self.port_nginx) = free_ports(5)
        self.ports = {"weir": self.port_weir, "haproxy": self.port_haproxy,
                      "nginx": self.port_nginx}
        self.origin = None
        self.procs = {}
        self.logs = {}
        os.makedirs(os.path.join(self.tmp, "www"))
        with open(os.path.join(self.tmp, "www", "1m.bin"), "wb") as f:
            f.write(b"\x5a" * BIG_BYTES)
        self._write_configs()

    # ---- configs
    def _nginx_common(self, name):
        d = os.path.join(self.tmp, name)
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        return d, f"""daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 12000; multi_accept off; }}
http {{
  access_log off;
  default_type text/plain;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
"""

    def _write_configs(self):
        t = self.tmp
        # Origin: NGINX, one process, pinned with the load generator.
        d, common = self._nginx_common("origin")
        origin = common + f"""  sendfile on;
  tcp_nopush on;
  server {{
    listen 127.0.0.1:{self.origin1} reuseport backlog=4096;
    listen 127.0.0.1:{self.origin2} reuseport backlog=4096;
    add_header X-Origin $server_port always;
    location = / {{ return 200 "{BODY_12}"; }}
    location = /1m.bin {{ root {t}/www; }}
    # The body is read off the socket and discarded (ngx_http_discard_request_body):
    # the origin costs little, and keep-alive still works.
    location = /post {{ client_max_body_size 1m; client_body_buffer_size 128k; return 200 "ok"; }}
    location / {{ return 200 "{BODY_12}"; }}
  }}
}}
"""
        self.origin_conf = os.path.join(d, "nginx.conf")
        with open(self.origin_conf, "w") as f:
            f.write(origin)

        # weir
        self.weir_conf = os.path.join(t, "weir.yaml")
        with open(self.weir_conf, "w") as f:
            access_log = f"access_log: {{ path: {t}/weir-access.log }}\n" if ACCESS_LOG else ""
            f.write(f"""workers: 1
{access_log}limits:
  max_idle_upstream_per_server: 64
  drain_timeout: 1s
listeners:
  - name: bench
    listen: 127.0.0.1:{self.port_weir}
    max_connections: 11000
    backend: origin
backends:
  - name: origin
    balance: round_robin
    servers:
      - address: 127.0.0.1:{self.origin1}
      - address: 127.0.0.1:{self.origin2}
""")

        # HAProxy: same headers added as weir (X-Forwarded-For/-Proto/-Host), keep-alive both sides.
        self.haproxy_conf = os.path.join(t, "haproxy.cfg")
        with open(self.haproxy_conf, "w") as f:
            f.write(f"""global
  nbthread 1
  maxconn 11000
  no strict-limits
  pidfile {t}/haproxy.pid
{"  log stdout format raw local0" if ACCESS_LOG else ""}

defaults
  mode http
{"  log global" + chr(10) + "  option httplog" if ACCESS_LOG else ""}
  option http-keep-alive
  option forwardfor
  http-reuse always
  timeout connect 2s
  timeout client 60s
  timeout server 30s
  timeout http-keep-alive 60s
  timeout http-request 10s

frontend bench
  bind 127.0.0.1:{self.port_haproxy}
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  default_backend origin

backend origin
  balance roundrobin
  server s1 127.0.0.1:{self.origin1}
  server s2 127.0.0.1:{self.origin2}
""")

        # NGINX as a proxy: upstream keep-alive, buffers in memory (no temp files).
        d, common = self._nginx_common("nginx-proxy")
        if ACCESS_LOG:
            common = common.replace("  access_log off;",
                                    f"  access_log {d}/access.log combined buffer=64k flush=1s;")
        proxy = common + f"""  upstream origin {{
    server 127.0.0.1:{self.origin1};
    server 127.0.0.1:{self.origin2};
    keepalive 64;
    keepalive_requests 10000000;
  }}
  server {{
    listen 127.0.0.1:{self.port_nginx} backlog=4096;
    client_max_body_size 1m;
    client_body_buffer_size 128k;
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_buffer_size 16k;
      proxy_buffers 8 64k;
      proxy_busy_buffers_size 128k;
      proxy_max_temp_file_size 0;
    }}
  }}
}}
"""
        self.nginx_conf = os.path.join(d, "nginx.conf")
        self.nginx_dir = d
        with open(self.nginx_conf, "w") as f:
            f.write(proxy)

    # ---- processes
    def proxy_cmd(self, name):
        if name == "weir":
            return [self.weir_bin, "run", "-c", self.weir_conf]
        if name == "haproxy":
            return ["haproxy", "-db", "-f", self.haproxy_conf]
        if name == "nginx":
            return ["nginx", "-p", self.nginx_dir, "-c", self.nginx_conf,
                    "-e", os.path.join(self.nginx_dir, "error.log")]
        raise ValueError(name)

    def start_origin(self):
        d = os.path.dirname(self.origin_conf)
        cmd = pin(["nginx", "-p", d, "-c", self.origin_conf, "-e", os.path.join(d, "error.log")],
                  LOAD_CPU)
        out = open(os.path.join(self.tmp, "origin.out"), "w")
        self.origin = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        if not (wait_port(self.origin1, 10, self.origin) and wait_port(self.origin2, 10)):
            raise RuntimeError("origin nginx did not start: " + self.tail(os.path.join(d, "error.log")))
        st, _, body = http_get(self.origin1, "/")
        assert st == 200 and body == BODY_12.encode(), (st, body)

    def start_proxy(self, name, wrapper=None, cpu="default", startup_timeout=15):
        """Starts a proxy (optionally under a wrapper such as valgrind); returns its pid."""
        cmd = self.proxy_cmd(name)
        if wrapper:
            cmd = wrapper + cmd
        cmd = pin(cmd, PROXY_CPU if cpu == "default" else cpu)
        logf = os.path.join(self.tmp, f"{name}.log")
        self.logs[name] = logf
        out = open(logf, "a")
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs[name] = p
        if not wait_port(self.ports[name], startup_timeout, p):
            self.stop_proxy(name)
            tail = self.tail(logf)
            last = (tail.strip().splitlines() or ["(empty log)"])[-1][:200]
            raise RuntimeError(f"{name} did not start: {last}; log:\n{tail}")
        return p.pid

    def alive(self, name):
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def stop_proxy(self, name, timeout=10):
        p = self.procs.pop(name, None)
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        return p.returncode

    def check_balance(self, name):
        """Both origin ports must be used (round robin) and the body must be intact."""
        seen = set()
        for _ in range(6):
            st, h, body = http_get(self.ports[name], "/")
            if st != 200 or body != BODY_12.encode():
                raise RuntimeError(f"{name}: unexpected answer {st} {body[:80]!r}")
            seen.add(h.get("x-origin"))
        if len(seen) != 2:
            raise RuntimeError(f"{name}: expected both origins to be used, saw {seen}")

    @staticmethod
    def tail(path, n=20):
        try:
            with open(path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def close(self):
        for name in list(self.procs):
            self.stop_proxy(name)
        if self.origin is not None and self.origin.poll() is None:
            self.origin.send_signal(signal.SIGTERM)
            try:
                self.origin.wait(10)
            except subprocess.TimeoutExpired:
                self.origin.kill()
                self.origin.wait(5)
        # keep the proxies' logs with the raw data, then remove the temp dir
        try:
            logdir = os.path.join(self.data_dir, self.log_subdir)
            os.makedirs(logdir, exist_ok=True)
            for name, path in self.logs.items():
                if os.path.exists(path):
                    shutil.copy(path, os.path.join(logdir, f"{name}.log"))
            for name, path in (("weir.yaml", self.weir_conf), ("haproxy.cfg", self.haproxy_conf),
                               ("nginx-proxy.conf", self.nginx_conf),
                               ("origin-nginx.conf", self.origin_conf)):
                shutil.copy(path, os.path.join(logdir, name))
        except OSError:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------- scenarios

SCENARIOS = [
    {"id": "s1", "title": "1. keep-alive GET, 12 B, 50 conns", "kind": "wrk", "conns": 50,
     "path": "/"},
    {"id": "s2", "title": "2. new connection per request (Connection: close), 50 conns",
     "kind": "wrk", "conns": 50, "path": "/", "close": True},
    {"id": "s3", "title": "3. keep-alive GET, 1 MiB responses, 50 conns", "kind": "wrk",
     "conns": 50, "path": "/1m.bin"},
    {"id": "s4", "title": "4. keep-alive POST, 64 KiB bodies, 50 conns", "kind": "wrk",
     "conns": 50, "path": "/post", "post": POST_BYTES},
    {"id": "s5", "title": "5. 10,000 idle keep-alive conns: RSS per conn", "kind": "idle",
     "conns": 10000},
    {"id": "s6", "title": "6. 1,000 conns at a fixed 2,000 req/s (latency from intended send)",
     "kind": "rate", "conns": 1000, "rate": 2000, "fresh": True},
    # plain HTTP/1.1 like 1-6 (so it runs in their bed, before the TLS scenarios 7-9): scenario
    # 5's procedure with 5,000 connections, the redesign issue's "idle keep-alive after one
    # request" figure (KiB per connection, before -> after)
    {"id": "s10", "title": "10. idle keep-alive after one request, 5,000 conns: RSS per conn",
     "kind": "idle", "conns": 5000},
]


def run_wrk(bed, name, sc, duration, rundir, tag):
    pid = bed.procs[name].pid
    cmd = ["wrk", "-t1", f"-c{sc['conns']}", f"-d{duration}s", "--timeout", "5s",
           "-s", os.path.join(HERE, "wrk", "report.lua")]
    if sc.get("close"):
        cmd += ["-H", "Connection: close"]
    for h in sc.get("headers", ()):  # e.g. Accept-Encoding (scenarios 12, 13)
        cmd += ["-H", h]
    cmd.append(f"{sc.get('scheme', 'http')}://127.0.0.1:{bed.ports[name]}{sc['path']}")
    env = dict(os.environ)
    if sc.get("post"):
        env["WRK_POST_BYTES"] = str(sc["post"])
    t0 = proc_cpu_ticks(pid)
    p = subprocess.run(pin(cmd, LOAD_CPU), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, env=env, timeout=duration + 60)
    alive = bed.alive(name)
    t1 = proc_cpu_ticks(pid) if alive else t0
    rss = proc_rss_kib(pid) if alive else 0
    with open(os.path.join(rundir, f"{tag}.wrk.txt"), "w") as f:
        f.write(" ".join(cmd) + "\n" + p.stdout)
    m = re.search(r"^JSON:(.*)$", p.stdout, re.M)
    if not m:
        return {"failed": f"wrk produced no result (exit {p.returncode})", "alive": alive}
    w = json.loads(m.group(1))
    reqs = w["requests"]
    errors = (w["err_connect"] + w["err_read"] + w["err_write"] + w["err_status"] +
              w["err_timeout"])
    r = {
        "requests": reqs,
        "bytes": w["bytes"],  # read by wrk, headers included
        "rps": reqs / (w["duration_us"] / 1e6) if w["duration_us"] else 0.0,
        "p50_ms": w["p50_us"] / 1000.0,
        "p99_ms": w["p99_us"] / 1000.0,
        "cpu_us_per_req": ((t1 - t0) / CLK_TCK * 1e6 / reqs) if reqs else None,
        "cpu_util": (t1 - t0) / CLK_TCK / duration,
        "rss_mib": rss / 1024.0,
        "errors": errors,
        "error_detail": {k: w[k] for k in w if k.startswith("err_") and w[k]},
        "alive": alive,
    }
    # With Connection: close, wrk reconnects after each complete response; only a close before
    # the response is complete counts as a (read) error.
    return r


def _spawn_client(args):
    cmd = pin([sys.executable, os.path.abspath(__file__)] + args, LOAD_CPU)
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)


def _read_line(p, timeout):
    r, _, _ = select.select([p.stdout], [], [], timeout)
    if not r:
        return None
    return p.stdout.readline()


def run_idle(bed, name, sc, rundir, tag):
    """Fresh proxy, warm up, VmRSS before, open N keep-alive conns (one request each), after."""
    bed.stop_proxy(name)
    pid = bed.start_proxy(name)
    bed.check_balance(name)
    subprocess.run(pin(["wrk", "-t1", "-c10", "-d1s", f"http://127.0.0.1:{bed.ports[name]}/"],
                       LOAD_CPU), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)
    time.sleep(0.5)
    before = proc_rss_kib(pid)
    hwm_before = proc_status_kib(pid, "VmHWM")
    p = _spawn_client(["idle-client", "--port", str(bed.ports[name]), "--conns",
                       str(sc["conns"])])
    try:
        line = _read_line(p, 120)
        if not line or not line.startswith("READY"):
            err = p.stderr.read() if p.poll() is not None else ""
            return {"failed": f"idle client did not get ready: {line!r} {err[-300:]}",
                    "alive": bed.alive(name)}
        info = json.loads(line.split(" ", 1)[1])
        time.sleep(1.0)
        alive = bed.alive(name)
        after = proc_rss_kib(pid) if alive else 0
        hwm_after = proc_status_kib(pid, "VmHWM") if alive else 0
        p.stdin.write("GO\n")
        p.stdin.flush()
        closed_line = _read_line(p, 60) or ""
        p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    ok = info["ok"]
    closed = 0
    if closed_line.startswith("CLOSED"):
        closed = json.loads(closed_line.split(" ", 1)[1])["closed_while_idle"]
        info["closed_while_idle"] = closed
    r = {
        "idle_conns": ok,
        "rss_before_mib": before / 1024.0,
        "rss_mib": after / 1024.0,
        "kib_per_conn": ((after - before) / ok) if ok else None,
        # VmHWM (peak RSS since the proxy started), before and after: how far the transient
        # of opening the connections (256 requests in flight) went above what stays
        "hwm_before_mib": hwm_before / 1024.0,
        "hwm_mib": hwm_after / 1024.0,
        "errors": info["failed"] + closed,
        "closed_while_idle": closed,
        "alive": alive,
    }
    with open(os.path.join(rundir, f"{tag}.idle.json"), "w") as f:
        json.dump({"client": info, "result": r}, f, indent=1)
    return r


def run_rate(bed, name, sc, duration, rundir, tag):
    pid = bed.procs[name].pid
    p = _spawn_client(["rate-client", "--port", str(bed.ports[name]), "--conns",
                       str(sc["conns"]), "--rate", str(sc["rate"]), "--duration",
                       str(duration)])
    try:
        line = _read_line(p, 60)
        if not line or not line.startswith("READY"):
            err = p.stderr.read() if p.poll() is not None else ""
            return {"failed": f"rate client did not get ready: {line!r} {err[-300:]}",
                    "alive": bed.alive(name)}
        t0 = proc_cpu_ticks(pid)
        p.stdin.write("GO\n")
        p.stdin.flush()
        line = _read_line(p, duration + 60)
        alive = bed.alive(name)
        t1 = proc_cpu_ticks(pid) if alive else t0
        rss = proc_rss_kib(pid) if alive else 0
        p.stdin.close()
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if not line or not line.startswith("RESULT"):
        return {"failed": f"rate client gave no result: {line!r}", "alive": alive}
    res = json.loads(line.split(" ", 1)[1])
    with open(os.path.join(rundir, f"{tag}.rate.json"), "w") as f:
        json.dump(res, f, indent=1)
    reqs = res["ok"]
    return {
        "requests": reqs,
        "rps": res["achieved_rps"],
        "p50_ms": res["p50_us"] / 1000.0 if res["p50_us"] is not None else None,
        "p99_ms": res["p99_us"] / 1000.0 if res["p99_us"] is not None else None,
        "cpu_us_per_req": ((t1 - t0) / CLK_TCK * 1e6 / reqs) if reqs else None,
        "cpu_util": (t1 - t0) / CLK_TCK / duration,
        "rss_mib": rss / 1024.0,
        "errors": res["errors"],
        "gen_send_lag_p99_ms": res["send_lag_p99_us"] / 1000.0,
        "alive": alive,
    }


def selected(sc, only):
    """BENCH_SCENARIOS names scenarios by id (s1) or by group (s7 = s7-full + s7-resumed)."""
    return not only or sc["id"] in only or sc.get("group") in only


def run_rounds(bed, sc, rounds, measure, proxies=None):
    """Measures the selected proxies (or the bed's `proxies`, by name) alternately
    (A B C A B C ...), `rounds` times.

    measure(bed, name, sc, tag) returns one run's figures. A proxy found dead is restarted for
    the next run; a run that fails or during which the proxy dies is recorded, never dropped."""
    proxies = SELECTED if proxies is None else proxies
    runs = {n: [] for n in proxies}
    for rnd in range(rounds):
        for name in proxies:
            tag = f"{sc['id']}-{name}-r{rnd + 1}"
            if not bed.alive(name):
                # a crash in an earlier run: record it and restart for the next one
                rc = bed.procs[name].returncode if name in bed.procs else None
                log(f"{name} is not running (exit {rc}); restarting")
                bed.stop_proxy(name)
                try:
                    bed.start_proxy(name)
                except RuntimeError as e:
                    runs[name].append({"failed": str(e), "alive": False})
                    log(f"{tag}: " + summarize_run(sc, runs[name][-1]))
                    continue
            try:
                r = measure(bed, name, sc, tag)
            except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
                r = {"failed": f"{type(e).__name__}: {e}", "alive": bed.alive(name)}
            if not r.get("alive", True):
                r["crashed"] = True
                rc = bed.procs[name].poll() if name in bed.procs else None
                how = (f"killed by {signal.Signals(-rc).name}" if rc is not None and rc < 0
                       else f"exit status {rc}")
                r["failed"] = (f"proxy process died during the run ({how})"
                               + (f"; {r['failed']}" if r.get("failed") else ""))
                r["log_tail"] = bed.tail(bed.logs.get(name, ""))
            runs[name].append(r)
            log(f"{tag}: " + summarize_run(sc, r))
            time.sleep(0.3)
    return runs


def cmd_scenarios(a):
    import chaos  # scenario 11 (server kills and reloads)
    import edge_scenarios  # scenarios 12-15 (compression, static files)
    import grpc_scenarios  # scenarios 16-17 (gRPC, HTTP/2 backends)
    import tls_scenarios  # scenarios 7-9 (TLS, HTTP/2)
    data_dir = a.data_dir
    os.makedirs(data_dir, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    rundir = os.path.join(data_dir, f"run-{stamp}")
    only = set(a.scenarios.split(",")) if a.scenarios else None
    plain = [sc for sc in SCENARIOS if selected(sc, only)]
    tls = [sc for sc in tls_scenarios.TLS_SCENARIOS if selected(sc, only)]
    chaos_sc = [sc for sc in chaos.CHAOS_SCENARIOS if selected(sc, only)]
    edge = [sc for sc in edge_scenarios.EDGE_SCENARIOS if selected(sc, only)]
    grpc = [sc for sc in grpc_scenarios.GRPC_SCENARIOS if selected(sc, only)]
    known = {x for sc in SCENARIOS + tls_scenarios.TLS_SCENARIOS + chaos.CHAOS_SCENARIOS
             + edge_scenarios.EDGE_SCENARIOS + grpc_scenarios.GRPC_SCENARIOS
             for x in (sc["id"], sc.get("group")) if x}
    if only and only - known:
        sys.exit(f"bench: BENCH_SCENARIOS: unknown {','.join(sorted(only - known))} "
                 f"(known: {','.join(sorted(known))})")
    os.makedirs(rundir)
    out = {"env": environment(a.weir), "rounds": a.rounds, "duration_s": a.duration,
           "proxies": SELECTED,
           "pinning": {"proxy_cpu": PROXY_CPU, "load_cpu": LOAD_CPU}, "scenarios": {},
           "quick": a.quick, "rundir": os.path.relpath(rundir, ROOT)}

    def measure(bed, name, sc, tag):
        if sc["kind"] == "wrk":
            return run_wrk(bed, name, sc, a.duration, rundir, tag)
        if sc["kind"] == "idle":
            return run_idle(bed, name, sc, rundir, tag)
        return run_rate(bed, name, sc, a.duration, rundir, tag)

    if plain:
        bed = Bed(a.weir, rundir)
        try:
            bed.start_origin()
            for name in SELECTED:
                bed.start_proxy(name)
                bed.check_balance(name)
            log(f"origin on :{bed.origin1} :{bed.origin2}; weir :{bed.port_weir}, haproxy "
                f":{bed.port_haproxy}, nginx :{bed.port_nginx}; proxy CPU {PROXY_CPU}, "
                f"load CPU {LOAD_CPU}")
            # warm-up
            for name in SELECTED:
                subprocess.run(pin(["wrk", "-t1", "-c50", "-d1s",
                                    f"http://127.0.0.1:{bed.ports[name]}/"], LOAD_CPU),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
            for sc in plain:
                if sc.get("fresh"):
                    # start from fresh processes (scenario 5 leaves them after 10,000 connections)
                    for name in SELECTED:
                        bed.stop_proxy(name)
                        bed.start_proxy(name)
                        bed.check_balance(name)
                        subprocess.run(pin(["wrk", "-t1", "-c50", "-d1s",
                                            f"http://127.0.0.1:{bed.ports[name]}/"], LOAD_CPU),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       timeout=60)
                runs = run_rounds(bed, sc, a.rounds, measure)
                out["scenarios"][sc["id"]] = {"title": sc["title"], "kind": sc["kind"],
                                              "spec": sc, "runs": runs}
        finally:
            bed.close()
    if tls:
        # separate processes with TLS-only configs: a proxy that cannot load them yet fails
        # only its TLS runs, not scenarios 1-6
        tls_scenarios.run_phase(a, rundir, tls, out)
    if chaos_sc:
        # its own backends (weir whoami, killed and restarted) and proxies, weir and HAProxy
        chaos.run_phase(a, rundir, chaos_sc, out)
    if edge:
        # its own origin (a JSON file) and proxies (compression on) or file servers (no proxy)
        edge_scenarios.run_phase(a, rundir, edge, out)
    if grpc:
        grpc_scenarios.run_phase(a, rundir, grpc, out)
    path = os.path.join(data_dir, "scenarios.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    shutil.copy(path, os.path.join(rundir, "scenarios.json"))
    log(f"raw data: {os.path.relpath(rundir, ROOT)}")


def summarize_run(sc, r):
    if r.get("failed"):
        return "FAILED: " + r["failed"].splitlines()[0][:200]
    if sc["kind"] == "handshake":
        return (f"{r['hs_per_s']:.0f} handshakes/s (resumed {r['resumed_pct']:.1f}%) "
                f"cpu {fmt(r['cpu_us_per_hs'], 1)} us/handshake ({r['cpu_util'] * 100:.0f}% of a "
                f"core) RSS {r['rss_mib']:.1f} MiB errors {r['errors']}")
    if sc["kind"] == "idle":
        return (f"{r['idle_conns']} conns, RSS {r['rss_before_mib']:.1f} -> {r['rss_mib']:.1f} MiB,"
                f" {fmt(r['kib_per_conn'], 2)} KiB/conn (peak RSS {r.get('hwm_mib', 0):.1f} MiB),"
                f" errors {r['errors']}")
    cpu = r.get("cpu_us_per_req")
    return (f"{r['rps']:.0f} req/s p50 {fmt(r['p50_ms'], 3)} ms p99 {fmt(r['p99_ms'], 3)} ms "
            f"cpu {fmt(cpu, 1)} us/req ({r['cpu_util'] * 100:.0f}% of a core) "
            f"RSS {r['rss_mib']:.1f} MiB errors {r['errors']}")


def fmt(v, nd=1):
    if v is None:
        return "n/a"
    return f"{v:,.{nd}f}"


# --------------------------------------------------------------------------- environment

def environment(weir_bin):
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    hv = run_quiet(["haproxy", "-v"]).splitlines()
    nv = run_quiet(["nginx", "-v"]).strip()
    wv = run_quiet(["wrk", "-v"]).splitlines()
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "weir": run_quiet([weir_bin, "version"]).strip(),
        "weir_bin": weir_bin,
        "weir_bin_mtime": datetime.datetime.fromtimestamp(os.path.getmtime(weir_bin)).astimezone()
        .strftime("%Y-%m-%d %H:%M %Z") if os.path.exists(weir_bin) else "?",
        "weir_commit": run_quiet(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).strip(),
        "weir_dirty": bool(run_quiet(["git", "-C", ROOT, "status", "--porcelain", "--",
                                      "src"]).strip()),
        "haproxy": (hv[0].split(" - ")[0].replace("HAProxy version ", "HAProxy ")
                    if hv else "?"),
        "nginx": nv.replace("nginx version: ", ""),
        "wrk": (wv[0].split(" Copyright")[0] if wv else "?"),
        "openssl": run_quiet(["openssl", "version"]).strip(),
        "h2load": " ".join(run_quiet(["h2load", "--version"]).split()[:2]),
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }


# --------------------------------------------------------------------------- load generators

def cmd_idle_client(a):
    """Opens N connections, does one keep-alive GET on each, holds them idle until told."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.conns + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.conns + 1000), hard))
    req = b"GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n"
    ep = select.epoll()
    conns = {}  # fd -> [sock, state, buf]
    done_socks = []
    failed = 0
    pending = a.conns
    deadline = time.monotonic() + 90
    batch = 256
    in_flight = 0

    def open_more():
        nonlocal pending, in_flight, failed
        while pending > 0 and in_flight < batch:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            e = s.connect_ex(("127.0.0.1", a.port))
            pending -= 1
            if e not in (0, errno.EINPROGRESS):
                failed += 1
                s.close()
                continue
            conns[s.fileno()] = [s, "connect", b""]
            ep.register(s.fileno(), select.EPOLLOUT)
            in_flight += 1

    open_more()
    while (pending > 0 or in_flight > 0) and time.monotonic() < deadline:
        for fd, ev in ep.poll(1.0):
            c = conns.get(fd)
            if c is None:
                continue
            s = c[0]
            finished = False
            ok = False
            if c[1] == "connect":
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    finished = True
                else:
                    try:
                        s.send(req)
                        c[1] = "read"
                        ep.modify(fd, select.EPOLLIN)
                    except OSError:
                        finished = True
            else:
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    finished = True
                else:
                    c[2] += data
                    head, sep, body = c[2].partition(b"\r\n\r\n")
                    if sep:
                        m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                        if m and len(body) >= int(m.group(1)):
                            finished = ok = head.startswith(b"HTTP/1.1 200")
                            finished = True
            if finished:
                ep.unregister(fd)
                del conns[fd]
                in_flight -= 1
                if ok:
                    done_socks.append(s)
                else:
                    failed += 1
                    s.close()
        open_more()
    failed += in_flight + pending
    print("READY " + json.dumps({"ok": len(done_socks), "failed": failed}), flush=True)
    sys.stdin.readline()
    # were any closed by the proxy while idle?
    closed = 0
    for s in done_socks:
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    print("CLOSED " + json.dumps({"closed_while_idle": closed}), flush=True)


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def cmd_rate_client(a):
    """Constant-throughput generator over a fixed set of keep-alive connections.

    Request i is due at t0 + i/rate and goes to connection i % conns. If that connection is
    still busy, the request waits in that connection's queue; its latency is measured from
    its *intended* send time, so a stalled proxy cannot hide behind a stalled generator
    (no coordinated omission, as in wrk2).
    """
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.conns + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.conns + 1000), hard))
    req = b"GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n"
    ep = select.epoll()
    socks = []
    # connect everything first (blocking connects are fine on loopback, in small batches)
    for _ in range(a.conns):
        s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    N = len(socks)
    by_fd = {}
    # per connection: [sock, queue of intended times, in-flight intended time or None, buf,
    #                  alive]
    conns = []
    for s in socks:
        c = [s, collections.deque(), None, b"", True]
        conns.append(c)
        by_fd[s.fileno()] = c
        ep.register(s.fileno(), select.EPOLLIN)
    now = time.monotonic
    lat = []
    lag = []
    errors = 0

    def send_next(c, t):
        nonlocal errors
        intended = c[1].popleft()
        c[2] = intended
        lag.append(t - intended)
        try:
            n = c[0].send(req)
            if n != len(req):
                raise OSError("short send")
        except OSError:
            c[4] = False
            errors += 1 + len(c[1])
            c[1].clear()
            c[2] = None

    def handle_read(c, record):
        """Returns the number of complete responses consumed."""
        nonlocal errors
        try:
            data = c[0].recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if c[4]:
                c[4] = False
                errors += (1 if c[2] is not None else 0) + len(c[1])
                c[1].clear()
                c[2] = None
                try:
                    ep.unregister(c[0].fileno())
                except OSError:
                    pass
            return
        c[3] += data
        while True:
            head, sep, body = c[3].partition(b"\r\n\r\n")
            if not sep:
                return
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if not m:
                errors += 1
                c[3] = b""
                return
            ln = int(m.group(1))
            if len(body) < ln:
                return
            c[3] = body[ln:]
            t = now()
            if c[2] is not None:
                if head.startswith(b"HTTP/1.1 200"):
                    if record:
                        lat.append(t - c[2])
                else:
                    errors += 1
                c[2] = None
            if c[1]:
                send_next(c, t)

    # warm-up: one request per connection, not recorded
    t = now()
    for c in conns:
        c[1].append(t)
        send_next(c, t)
    deadline = t + 30
    while any(c[2] is not None for c in conns) and now() < deadline:
        for fd, _ in ep.poll(0.5):
            handle_read(by_fd[fd], False)
    lat.clear()
    lag.clear()
    errors = 0
    print(f"READY {N}", flush=True)
    sys.stdin.readline()

    total = int(a.rate * a.duration)
    t0 = now() + 0.05
    i = 0
    end_deadline = t0 + a.duration + 10
    while True:
        t = now()
        while i < total and t0 + i / a.rate <= t:
            c = conns[i % N]
            if c[4]:
                c[1].append(t0 + i / a.rate)
                if c[2] is None:
                    send_next(c, t)
            else:
                errors += 1
            i += 1
        if i >= total and all(c[2] is None for c in conns):
            break
        if t > end_deadline:
            errors += sum((1 if c[2] is not None else 0) + len(c[1]) for c in conns)
            break
        timeout = max(0.0, t0 + i / a.rate - now()) if i < total else 0.2
        for fd, _ in ep.poll(timeout):
            handle_read(by_fd[fd], True)
    elapsed = now() - t0
    lat_us = sorted(x * 1e6 for x in lat)
    lag_us = sorted(x * 1e6 for x in lag)
    res = {
        "scheduled": total, "ok": len(lat_us), "errors": errors,
        "elapsed_s": elapsed, "achieved_rps": len(lat_us) / a.duration,
        "p50_us": percentile(lat_us, 50), "p90_us": percentile(lat_us, 90),
        "p99_us": percentile(lat_us, 99), "p999_us": percentile(lat_us, 99.9),
        "max_us": lat_us[-1] if lat_us else None,
        "send_lag_p50_us": percentile(lag_us, 50), "send_lag_p99_us": percentile(lag_us, 99) or 0,
    }
    print("RESULT " + json.dumps(res), flush=True)
    sys.stdin.readline()
    for s in socks:
        s.close()


# --------------------------------------------------------------------------- callgrind / strace

def h2load(port, n, rundir=None, tag=None):
    cmd = pin(["h2load", "--h1", "-n", str(n), "-c", "1", "-t", "1",
               f"http://127.0.0.1:{port}/"], LOAD_CPU)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=1800)
    if rundir:
        with open(os.path.join(rundir, f"{tag}.h2load.txt"), "w") as f:
            f.write(p.stdout)
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", p.stdout)
    if not m:
        raise RuntimeError("h2load gave no summary: " + p.stdout[-500:])
    return int(m.group(4)), int(m.group(5)) + int(m.group(6))


def cmd_callgrind(a):
    os.makedirs(a.data_dir, exist_ok=True)
    rundir = os.path.join(a.data_dir, "callgrind-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(rundir)
    bed = Bed(a.weir, rundir)
    res = {"requests": a.requests, "env": environment(a.weir), "proxies": {}}
    try:
        bed.start_origin()
        for name in SELECTED:
            outf = os.path.join(bed.tmp, f"callgrind.{name}.out")
            wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={outf}",
                       "--dump-instr=no", "--dump-line=no", "--trace-children=no"]
            try:
                pid = bed.start_proxy(name, wrapper=wrapper, startup_timeout=120)
                # warm-up, then zero the counters so start-up cost is excluded
                h2load(bed.ports[name], 200)
                z = subprocess.run(["callgrind_control", "-z", str(pid)], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, timeout=60)
                t = time.monotonic()
                ok, errs = h2load(bed.ports[name], a.requests, rundir, f"callgrind-{name}")
                secs = time.monotonic() - t
                d = subprocess.run(["callgrind_control", "-d", str(pid)], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, timeout=60)
                time.sleep(0.5)
                bed.stop_proxy(name, timeout=60)
                ir = None
                # the dump after -z holds exactly the measured window; the final dump at exit
                # holds only what came after it (shutdown), which is ignored
                dumps = sorted(glob.glob(outf + "*"), key=os.path.getmtime)
                for path in dumps:
                    txt = open(path, errors="replace").read()
                    trig = re.search(r"^desc: Trigger: (.*)$", txt, re.M)
                    if trig and "termination" not in trig.group(1):
                        m = re.search(r"^summary:\s*(\d+)", txt, re.M)
                        if m:
                            ir = int(m.group(1))
                    shutil.copy(path, rundir)
                if ir is None:
                    raise RuntimeError("no callgrind dump found (callgrind_control: "
                                       f"{z.stdout.strip()} / {d.stdout.strip()})")
                res["proxies"][name] = {"ir": ir, "ok": ok, "errors": errs,
                                        "ir_per_req": ir / ok if ok else None,
                                        "seconds": secs}
                log(f"callgrind {name}: {ir:,} Ir / {ok} requests = {ir / max(ok, 1):,.0f} Ir/req "
                    f"(errors {errs})")
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                bed.stop_proxy(name)
                res["proxies"][name] = {"failed": str(e)}
                log(f"callgrind {name}: FAILED {e}")
    finally:
        bed.close()
    with open(os.path.join(a.data_dir, "callgrind.json"), "w") as f:
        json.dump(res, f, indent=1)


def parse_strace(path):
    counts = {}
    with open(path, errors="replace") as f:
        for line in f:
            tok = line.split()
            if len(tok) < 5 or tok[-1] == "total" or not re.match(r"^[\d.]+$", tok[0]):
                continue
            try:
                counts[tok[-1]] = int(tok[3])
            except ValueError:
                continue
    return counts


def cmd_syscalls(a):
    os.makedirs(a.data_dir, exist_ok=True)
    rundir = os.path.join(a.data_dir, "syscalls-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(rundir)
    bed = Bed(a.weir, rundir)
    res = {"requests": a.requests, "conns": 1, "env": environment(a.weir), "proxies": {}}
    try:
        bed.start_origin()
        for name in SELECTED:
            try:
                pid = bed.start_proxy(name)
                h2load(bed.ports[name], 200)
                outf = os.path.join(rundir, f"strace-{name}.txt")
                st = subprocess.Popen(["strace", "-c", "-f", "-q", "-o", outf, "-p", str(pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                time.sleep(1.0)  # let strace attach to every thread
                ok, errs = h2load(bed.ports[name], a.requests, rundir, f"strace-{name}")
                time.sleep(0.2)
                st.send_signal(signal.SIGINT)
                st.wait(30)
                bed.stop_proxy(name)
                counts = parse_strace(outf)
                total = sum(counts.values())
                res["proxies"][name] = {
                    "ok": ok, "errors": errs, "total": total,
                    "per_req": total / ok if ok else None,
                    "by_call": {k: v / ok for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
                    if ok else {},
                }
                log(f"syscalls {name}: {total} calls / {ok} requests = {total / max(ok, 1):.2f}/req")
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                bed.stop_proxy(name)
                res["proxies"][name] = {"failed": str(e)}
                log(f"syscalls {name}: FAILED {e}")
    finally:
        bed.close()
    with open(os.path.join(a.data_dir, "syscalls.json"), "w") as f:
        json.dump(res, f, indent=1)


# --------------------------------------------------------------------------- report

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def error_cell(x, sc, name, notes):
    """The errors cell of a report row; failed runs are flagged and their messages noted."""
    err = str(x["errors"])
    if x["failed"]:
        err += f"; **{x['failed']}/{x['runs']} runs failed**"
        if x["crashed"]:
            err += f" (**crashed {x['crashed']}×**)"
        notes.append(f"- {sc['title']} / {name}: " + "; ".join(x["fail_msgs"]))
    return err


def ratio(v, base, nd=2):
    if v is None or not base:
        return "n/a"
    return f"{v / base:.{nd}f}×"


def aggregate(sc):
    """Median of every figure over the rounds, per proxy; failures are counted, not hidden."""
    agg = {}
    for name, runs in sc["runs"].items():
        good = [r for r in runs if not r.get("failed")]
        a = {"runs": len(runs), "failed": len(runs) - len(good),
             "crashed": sum(1 for r in runs if r.get("crashed")),
             "errors": sum(r.get("errors", 0) or 0 for r in good),
             "fail_msgs": sorted({r["failed"].splitlines()[0][:160] for r in runs
                                  if r.get("failed")})}
        for key in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "rss_mib", "kib_per_conn",
                    "rss_before_mib", "idle_conns", "hwm_mib", "gen_send_lag_p99_ms", "requests",
                    "cpu_util", "mean_ms", "hs_per_s", "cpu_us_per_hs", "resumed_pct"):
            a[key] = med([r.get(key) for r in good])
        agg[name] = a
    return agg


def cmd_report(a):
    import chaos  # scenario 11's table
    import edge_scenarios  # scenarios 12-15's tables
    import grpc_scenarios  # scenarios 16-17's tables
    import tls_scenarios  # the TLS parts of the report
    d = a.data_dir
    md_dir = a.md_dir
    os.makedirs(md_dir, exist_ok=True)

    def load(name):
        try:
            with open(os.path.join(d, name)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    scen, cg, sy = load("scenarios.json"), load("callgrind.json"), load("syscalls.json")
    env = (scen or cg or sy or {}).get("env") or environment(a.weir)
    L = []
    L.append("# weir vs HAProxy vs NGINX — benchmark results")
    L.append("")
    if a.quick:
        L.append("> **Quick smoke run** (`bench/run.sh --quick`): 1 round, short runs. "
                 "Not for comparison.")
        L.append("")
    L.append(f"- date: {env['date']}")
    L.append(f"- machine: {env['nproc']} CPUs ({env['cpu_model']}), kernel {env['kernel']}, "
             f"load average at start {' '.join(env.get('loadavg', []))}")
    dirty = " (work tree with uncommitted changes under src/)" if env.get("weir_dirty") else ""
    wbin = env.get("weir_bin", "")
    if wbin and os.path.abspath(wbin) != os.path.join(ROOT, "build/release/weir"):
        built = f"binary `{wbin}` built {env.get('weir_bin_mtime', '?')} (work tree then at " \
                f"{env.get('weir_commit', '?')})"
    else:
        built = f"@ {env.get('weir_commit', '?')}{dirty}, `build/release/weir` built " \
                f"{env.get('weir_bin_mtime', '?')}"
    measured = (scen or {}).get("proxies") or PROXIES
    if "weir" in measured:
        L.append(f"- weir: {env['weir']} {built}, release build, `workers: 1`")
    else:
        L.append("- weir: not measured in this run (`BENCH_PROXIES`)")
    L.append(f"- HAProxy: {env['haproxy']}, `nbthread 1`")
    L.append(f"- NGINX: {env['nginx']}, `worker_processes 1` (`master_process off`)")
    L.append(f"- load generator: {env['wrk']} (`-t1`), plus the harness's own Python generators "
             f"for scenarios 5, 6 and 10")
    if scen and any(sc["kind"] in ("handshake", "h2load") for sc in scen["scenarios"].values()):
        L.append(f"- TLS: {env.get('openssl', '?')} (`openssl s_time`, scenario 7), "
                 f"{env.get('h2load', '?')} (scenario 9)")
    if scen:
        pin_ = scen.get("pinning", {})
        if pin_.get("proxy_cpu") is not None:
            L.append(f"- pinning: the proxy under test on CPU {pin_['proxy_cpu']}; load generator "
                     f"and origin (NGINX) on CPU {pin_['load_cpu']}")
        else:
            L.append("- pinning: none")
        names = {"weir": "weir", "haproxy": "HAProxy", "nginx": "NGINX"}
        L.append(f"- rounds: {scen['rounds']} (proxies measured alternately, "
                 f"{' → '.join(names[n] for n in measured)}, round after round), "
                 f"{scen['duration_s']} s per run; figures are the median over the rounds; "
                 f"ratios are to HAProxy's median")
    L.append("")
    if scen:
        notes = []
        # no such table when only memory / handshake scenarios ran (e.g. BENCH_SCENARIOS=s10)
        if any(sc["kind"] not in ("idle", "handshake", "chaos")
               and not sc["kind"].startswith(("edge-", "grpc-"))
               for sc in scen["scenarios"].values()):
            L.append("## Throughput, latency, CPU and memory")
            L.append("")
            L.append("| scenario | proxy | req/s | ÷ HAProxy | p50 ms | p99 ms | CPU µs/req | "
                     "÷ HAProxy | proxy CPU % | RSS MiB | errors |")
            L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
            for sid, sc in scen["scenarios"].items():
                if (sc["kind"] in ("idle", "handshake", "chaos")
                        or sc["kind"].startswith(("edge-", "grpc-"))):
                    continue  # edge-*, grpc-*: scenarios 12-17, tables of their own
                agg = aggregate(sc)
                base = agg.get(BASELINE, {})
                for name in PROXIES:
                    x = agg.get(name)
                    if x is None:
                        continue
                    err = error_cell(x, sc, name, notes)
                    L.append(f"| {sc['title']} | {name} | {fmt(x['rps'], 0)} | "
                             f"{ratio(x['rps'], base.get('rps'))} | {fmt(x['p50_ms'], 3)} | "
                             f"{fmt(x['p99_ms'], 3)} | {fmt(x['cpu_us_per_req'], 1)} | "
                             f"{ratio(x['cpu_us_per_req'], base.get('cpu_us_per_req'))} | "
                             f"{fmt(x['cpu_util'] * 100 if x['cpu_util'] is not None else None, 0)} | "
                             f"{fmt(x['rss_mib'], 1)} | {err} |")
            L.append("")
            L.append("How to read it: *proxy CPU %* is the share of one core the proxy used during "
                     "the run. Below 100 % the proxy was not the bottleneck: the load generator and "
                     "the origin share the other core, so req/s and latency also reflect how the "
                     "proxy's pattern of reads/writes loads *that* core. *CPU µs/req* (utime + stime "
                     "of the proxy ÷ requests) is the proxy's own cost and the most robust "
                     "efficiency figure here.")
            L.append("")
        L.extend(tls_scenarios.table_notes(scen))
        if "s6" in scen["scenarios"]:
            agg = aggregate(scen["scenarios"]["s6"])
            lags = ", ".join(f"{n} {fmt(agg[n]['gen_send_lag_p99_ms'], 3)} ms" for n in PROXIES
                             if n in agg)
            L.append(f"Scenario 6 req/s is the achieved rate (the target is fixed); the "
                     f"generator's own p99 send lag (actual − intended send time) was: {lags}.")
            L.append("")
        for sid, sc in scen["scenarios"].items():
            if sc["kind"] != "idle":
                continue  # scenarios 5 and 10: one table each
            agg = aggregate(sc)
            base = agg.get(BASELINE, {})
            what = " after one request" if sid == "s10" else ""
            L.append(f"## Idle keep-alive connections{what} (scenario {sid[1:]}, "
                     f"{sc['spec']['conns']:,} connections)")
            L.append("")
            L.append("| proxy | idle conns held | RSS before MiB | RSS after MiB | KiB per conn | "
                     "÷ HAProxy | peak RSS MiB | errors |")
            L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
            for name in PROXIES:
                x = agg.get(name)
                if x is None:
                    continue
                err = str(x["errors"])
                if x["failed"]:
                    err += f"; **{x['failed']}/{x['runs']} runs failed**"
                    notes.append(f"- {sc['title']} / {name}: " + "; ".join(x["fail_msgs"]))
                L.append(f"| {name} | {fmt(x['idle_conns'], 0)} | {fmt(x['rss_before_mib'], 1)} | "
                         f"{fmt(x['rss_mib'], 1)} | {fmt(x['kib_per_conn'], 2)} | "
                         f"{ratio(x['kib_per_conn'], base.get('kib_per_conn'))} | "
                         f"{fmt(x['hwm_mib'], 1)} | {err} |")
            L.append("")
        L.extend(tls_scenarios.handshake_section(scen, notes))
        L.extend(chaos.report_section(scen, notes))
        L.extend(edge_scenarios.report_section(scen, notes))
        L.extend(grpc_scenarios.report_section(scen, notes))
        if notes:
            L.append("### Failures")
            L.append("")
            L.extend(notes)
            L.append("")
        if any(sc["kind"] != "chaos" and not sc["kind"].startswith(("edge-", "grpc-"))
               for sc in scen["scenarios"].values()):  # else no chart
            L.append("![requests/s and CPU per request, relative to HAProxy](latest.png)")
            L.append("")
    else:
        L.append("_Scenarios not run yet (`bash bench/run.sh`)._")
        L.append("")

    L.append("## Instructions and system calls per request (scenario 1, one connection)")
    L.append("")
    if cg or sy:
        L.append("| proxy | instructions (Ir) / req | ÷ HAProxy | syscalls / req | ÷ HAProxy | "
                 "top syscalls per request |")
        L.append("| --- | ---: | ---: | ---: | ---: | --- |")
        cgp = (cg or {}).get("proxies", {})
        syp = (sy or {}).get("proxies", {})
        cb = cgp.get(BASELINE, {}).get("ir_per_req")
        sb = syp.get(BASELINE, {}).get("per_req")
        for name in PROXIES:
            if name not in cgp and name not in syp:
                continue
            c = cgp.get(name, {})
            s = syp.get(name, {})
            ir = fmt(c.get("ir_per_req"), 0) if "failed" not in c else "**failed**"
            if c.get("errors"):
                ir += f" ({c['errors']} errors)"
            sc_ = fmt(s.get("per_req"), 2) if "failed" not in s else "**failed**"
            if s.get("errors"):
                sc_ += f" ({s['errors']} errors)"
            top = ", ".join(f"{k} {v:.2f}" for k, v in list(s.get("by_call", {}).items())[:6]
                            if v >= 0.005)
            L.append(f"| {name} | {ir} | {ratio(c.get('ir_per_req'), cb)} | {sc_} | "
                     f"{ratio(s.get('per_req'), sb)} | {top} |")
        L.append("")
        if cg:
            L.append(f"Instructions ({cg['env']['date']}): `valgrind --tool=callgrind`, counters "
                     f"zeroed after a 200-request warm-up, then {cg['requests']:,} keep-alive GETs "
                     f"over one connection (`h2load --h1 -c1`); total Ir of the proxy process ÷ "
                     f"successful requests.")
        if sy:
            L.append(f"System calls ({sy['env']['date']}): `strace -c -f` attached to the running "
                     f"proxy for {sy['requests']:,} keep-alive GETs over one connection (after a "
                     f"warm-up); every call of every thread ÷ successful requests. Includes the "
                     f"calls towards the origin.")
        L.append("")
    else:
        L.append("_Not run yet (`bash bench/callgrind.sh`, `bash bench/syscalls.sh`)._")
        L.append("")
    L.append("How every figure is measured: [bench/README.md](../README.md)."
             if md_dir == RESULTS else "How every figure is measured: bench/README.md.")
    L.append("")
    with open(os.path.join(md_dir, "latest.md"), "w") as f:
        f.write("\n".join(L))
    if scen:
        plot(scen, md_dir, d)
    log(f"wrote {os.path.relpath(os.path.join(md_dir, 'latest.md'), ROOT)}")


def plot(scen, md_dir, data_dir):
    if not shutil.which("gnuplot"):
        log("gnuplot not found: no chart")
        return
    short = {"s1": "1 keep-alive", "s2": "2 close", "s3": "3 1 MiB", "s4": "4 POST",
             "s5": "5 idle mem", "s6": "6 rate", "s7-full": "7 TLS full",
             "s7-resumed": "7 TLS resumed", "s8": "8 HTTPS h1", "s9": "9 HTTPS h2",
             "s10": "10 idle 1 req"}
    # throughput: not for 5 (memory) and 6 (fixed rate); cost: CPU per request / handshake,
    # memory per connection for 5 and 10
    thr_key = {"wrk": "rps", "h2load": "rps", "handshake": "hs_per_s"}
    cost_key = {"idle": "kib_per_conn", "handshake": "cpu_us_per_hs"}
    thr, cost = [], []

    def rel(agg, n, key, b):
        v = agg.get(n, {}).get(key)
        return v / b if b and v else 0.0  # no bar: not measured, or failed

    for sid, sc in scen["scenarios"].items():
        if sc["kind"] == "chaos" or sc["kind"].startswith(("edge-", "grpc-")):
            continue  # failure counts (11), or relative to NGINX (12-15): tables of their own
        agg = aggregate(sc)
        base = agg.get(BASELINE, {})
        key = thr_key.get(sc["kind"])
        if key:
            thr.append([short.get(sid, sid)] + [rel(agg, n, key, base.get(key)) for n in PROXIES])
        key = cost_key.get(sc["kind"], "cpu_us_per_req")
        cost.append([short.get(sid, sid)] + [rel(agg, n, key, base.get(key)) for n in PROXIES])
    if not cost:
        return
    f1 = os.path.join(data_dir, "plot-throughput.dat")
    f2 = os.path.join(data_dir, "plot-cost.dat")
    for path, rows in ((f1, thr), (f2, cost)):
        with open(path, "w") as f:
            f.write("# scenario " + " ".join(PROXIES) + "\n")
            for r in rows:
                f.write(f'"{r[0]}" ' + " ".join(f"{v:.4f}" for v in r[1:]) + "\n")
    png = os.path.join(md_dir, "latest.png")
    # no throughput chart when no scenario has one (e.g. BENCH_SCENARIOS=s5 or s10)
    thr_plot = (f'set title "requests/s (higher is better)"\n'
                f'plot "{f1}" using 2:xtic(1) title "weir" lc rgb "#d62728", \'\' using 3 '
                f'title "HAProxy" lc rgb "#1f77b4", \'\' using 4 title "NGINX" lc rgb "#2ca02c"\n'
                if thr else "")
    gp = f"""
set terminal pngcairo size {1600 if thr else 800},560 font "sans,11"
set output "{png}"
set multiplot layout 1,{2 if thr else 1} title "weir vs HAProxy vs NGINX (one worker each) — relative to HAProxy = 1.0"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set key outside bottom center horizontal
set xtics nomirror rotate by -30
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "#444444"
{thr_plot}set title "CPU µs per request; 5, 10: KiB per idle connection; 7: CPU µs per handshake (lower is better)"
plot "{f2}" using 2:xtic(1) title "weir" lc rgb "#d62728", '' using 3 title "HAProxy" lc rgb "#1f77b4", '' using 4 title "NGINX" lc rgb "#2ca02c"
unset multiplot
"""
    gpf = os.path.join(data_dir, "plot.gp")
    with open(gpf, "w") as f:
        f.write(gp)
    p = subprocess.run(["gnuplot", gpf], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=60)
    if p.returncode != 0:
        log("gnuplot failed: " + p.stdout[-500:])


# --------------------------------------------------------------------------- main

def _terminate(signum, frame):
    # run.sh's `timeout`, or a user's kill: unwind so every `finally` stops what it started
    raise SystemExit(128 + signum)


def main():
    signal.signal(signal.SIGTERM, _terminate)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--weir", default=os.environ.get("WEIR_BIN",
                                                         os.path.join(ROOT, "build/release/weir")))
        p.add_argument("--quick", action="store_true")
        p.add_argument("--data-dir")
        p.add_argument("--md-dir")

    p = sub.add_parser("scenarios")
    common(p)
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    p.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", "10")))
    p.add_argument("--scenarios", default=os.environ.get("BENCH_SCENARIOS", ""),
                   help="comma-separated subset, e.g. s1,s5 or s7,s8,s9 or s10 or s11 or "
                        "s12,s13 or edge (s12-s15)")
    p = sub.add_parser("callgrind")
    common(p)
    p.add_argument("--requests", type=int, default=int(os.environ.get("BENCH_CG_REQUESTS", "20000")))
    p = sub.add_parser("syscalls")
    common(p)
    p.add_argument("--requests", type=int, default=int(os.environ.get("BENCH_STRACE_REQUESTS", "5000")))
    p = sub.add_parser("report")
    common(p)
    p = sub.add_parser("idle-client")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, required=True)
    p = sub.add_parser("rate-client")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--duration", type=float, required=True)
    a = ap.parse_args()
    unknown = [p for p in _WANTED if p not in PROXIES]
    if unknown or (_WANTED and not SELECTED):
        sys.exit(f"bench: BENCH_PROXIES: unknown {','.join(unknown) or 'empty list'} "
                 f"(choose among {','.join(PROXIES)})")

    if a.cmd == "idle-client":
        return cmd_idle_client(a)
    if a.cmd == "rate-client":
        return cmd_rate_client(a)

    # BENCH_OUT=DIR: raw data and report both go to DIR (e.g. a baseline binary measured
    # without touching the committed bench/results/latest.md)
    out_dir = os.environ.get("BENCH_OUT")
    if out_dir:
        a.data_dir = a.data_dir or os.path.abspath(out_dir)
        a.md_dir = a.md_dir or os.path.abspath(out_dir)
    if a.quick:
        a.data_dir = a.data_dir or os.path.join(RESULTS, "raw", "quick")
        a.md_dir = a.md_dir or os.path.join(RESULTS, "raw", "quick")
        if a.cmd == "scenarios":
            a.rounds, a.duration = 1, 3
        elif a.cmd == "callgrind":
            a.requests = min(a.requests, 2000)
        elif a.cmd == "syscalls":
            a.requests = min(a.requests, 1000)
    a.data_dir = a.data_dir or os.path.join(RESULTS, "raw")
    a.md_dir = a.md_dir or RESULTS
    if "weir" in SELECTED and a.cmd != "report" and not os.access(a.weir, os.X_OK):
        sys.exit(f"bench: weir binary not found at {a.weir} (build it: make release)")
    {"scenarios": cmd_scenarios, "callgrind": cmd_callgrind, "syscalls": cmd_syscalls,
     "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    # bench/tls_scenarios.py (and edge_scenarios.py) do `import bench`: make that this very
    # module, not a second copy
    sys.modules.setdefault("bench", sys.modules[__name__])
    main()
