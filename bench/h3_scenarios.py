#!/usr/bin/python3
"""HTTP/3 against HTTP/2 through the same weir: requests/s and weir's CPU per request.

    /usr/bin/python3 bench/h3_scenarios.py [--weir build/release/weir] [--rounds 3]
        [--requests 20000] [--conns 4] [--streams 32] [--body-bytes 100] [--bulk-mib 100]
        [--quick] [--no-pin] [--out DIR] [--json]

weir alone (Debian's HAProxy and NGINX have no HTTP/3, nor has curl; h2load has no HTTP/3
either): one `weir run` (`workers: 1`) with one TLS listener, `http3: true` (HTTP/1.1 and h2
over TCP, HTTP/3 over QUIC on the same port number), an admin listener, and the same backends
for both protocols:

  - small responses: the harness's origin, one NGINX process on two ports (round robin, keep-
    alive), `GET /small` answers a fixed --body-bytes body (100);
  - bulk (--bulk-mib, 100; 0 = none): `weir whoami`, `GET /bulk/down?size=N` answers N more
    bytes, `POST /bulk/up` reads the whole body and answers `Body-Length: N`.

Per round, in this order (so that a slow period of the machine hits both protocols):

  h2 small   h2load -t1 -c CONNS -m STREAMS -n REQUESTS over TLS (ALPN h2)
  h3 small   CONNS gtlsclient processes in parallel, each -n REQUESTS/CONNS on one QUIC
             connection (streams as many at once as weir allows: its h3_max_concurrent_streams
             is set to STREAMS, so both protocols have CONNS x STREAMS requests in flight)
  h2 down    curl --http2, one download of BULK MiB       h3 down   gtlsclient, the same
  h2 up      curl --http2, one POST upload of BULK MiB    h3 up     gtlsclient -d, the same

Figures per run: requests/s (or MiB/s) by the wall clock from the clients' start to the last
one's exit (handshakes included: one per connection); weir's CPU (utime + stime of the process,
all threads, /proc/PID/stat before and after) per request (or per MiB): the fair figure, since
the clients differ; the clients' CPU (their rusage, all processes) and the backend's. Both
clients offer TLS 1.3 with AES-128-GCM only, so the same AEAD is used by both protocols.

Checks (a failed check fails the run, loudly, and the script exits 1): before every run one
request over the protocol of the run (curl --http2 must say HTTP/2 and 200 with the body;
gtlsclient, not quiet, must negotiate h3 and get 200 with the body on 4 streams); after every
run weir's own `weir_requests_total{code}` must have grown by exactly the requests of the run,
all 200, and the h2/h3 connection counters by the clients' connections; h2load must report
every request 2xx over h2; every gtlsclient must exit 0; bulk bodies are checked for size
(download) and by the backend's `Body-Length` (upload). The weir_quic_* counters (packets
dropped, send errors, retries, stateless resets, version negotiations) are printed after every
HTTP/3 run and summed in the report: any of them above 0 is flagged.

CPU pinning as in bench/run.sh: with 2+ CPUs (and without --no-pin or BENCH_NO_PIN=1) weir runs
alone on the first CPU, the clients and the backends on the second; the clients are then the
limit of requests/s, and weir's CPU per request is the figure that measures weir.

Results: the table on stdout and in bench/results/h3-latest.md (--quick: bench/results/raw/
quick/h3-latest.md; BENCH_OUT=DIR: DIR/h3-latest.md); raw data (h3.json, configs, weir's log,
the clients' outputs) in bench/results/raw/h3-DATE/ (--quick: raw/quick/h3-DATE; BENCH_OUT=DIR:
DIR/h3-DATE; or --out). Loopback only; every process is started by this script and stopped by
its pid; every step has a time limit.
Standard library only; needs h2load (nghttp2-client), gtlsclient (ngtcp2-client), curl,
nginx and openssl.
"""

import argparse
import ctypes
import datetime
import json
import os
import platform
import random
import re
import resource
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
CLK_TCK = os.sysconf("SC_CLK_TCK")
GTLSCLIENT = shutil.which("gtlsclient") or "/usr/bin/gtlsclient"
# The same AEAD on both sides: weir's QUIC (GnuTLS) prefers AES-128-GCM; h2load and curl
# (OpenSSL) would pick AES-256-GCM by default.
GTLS_CIPHERS = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM"
OSSL_SUITE = "TLS_AES_128_GCM_SHA256"
QUIC_COUNTERS = ["weir_quic_packets_dropped_total", "weir_quic_send_errors_total",
                 "weir_quic_retries_total", "weir_quic_stateless_resets_total",
                 "weir_quic_version_negotiations_total", "weir_quic_connections_open",
                 "weir_http3_connections_total", "weir_h2_connections_total",
                 "weir_upstream_connects_total", "weir_upstream_reuses_total"]
BAD_QUIC = ["weir_quic_packets_dropped_total", "weir_quic_send_errors_total",
            "weir_quic_retries_total", "weir_quic_stateless_resets_total",
            "weir_quic_version_negotiations_total"]


class CheckFailed(RuntimeError):
    pass


def log(msg):
    print(f"[h3 {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _pdeathsig():
    """Children die with this script (SIGKILL when it goes), whatever kills it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def cpu_sets(no_pin):
    if no_pin or os.environ.get("BENCH_NO_PIN") == "1" or not shutil.which("taskset"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return str(cpus[0]), str(cpus[1])


def pin(cmd, cpu):
    return (["taskset", "-c", cpu] + cmd) if cpu is not None else cmd


def proc_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_sched_ns(pid):
    """CPU time of all the process's threads in ns (schedstat: on-CPU time), a finer clock than
    the 10 ms ticks of utime + stime: the cross-check of short runs."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


UDP_KEYS = ("InDatagrams", "OutDatagrams", "InErrors", "RcvbufErrors", "SndbufErrors",
            "NoPorts")


def udp_snmp():
    """The kernel's UDP counters (whole host; on this loopback bed, mostly our QUIC)."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [ln.split() for ln in f if ln.startswith("Udp:")]
        d = dict(zip(rows[0][1:], (int(x) for x in rows[1][1:])))
        return {k: d.get(k, 0) for k in UDP_KEYS}
    except (OSError, IndexError, ValueError):
        return {}


def udp_socket_drops(port):
    """`drops` of the UDP sockets bound to 127.0.0.1:port (/proc/net/udp): datagrams the
    kernel discarded for weir's own socket (its receive buffer was full)."""
    want = f"0100007F:{port:04X}"
    total = 0
    try:
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                cols = line.split()
                if len(cols) >= 13 and cols[1] == want:
                    total += int(cols[12])
    except (OSError, ValueError, StopIteration):
        pass
    return total


def cpu_jiffies(cpu):
    """(busy, total, steal) jiffies of one CPU (/proc/stat), or None."""
    if cpu is None:
        return None
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:9]]
                user, nice, system, idle, iowait, irq, softirq, steal = v
                busy = user + nice + system + irq + softirq + steal
                return busy, busy + idle + iowait, steal
    return None


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def free_ports(n):
    """n ports free for both TCP and UDP, below the ephemeral range."""
    rng = random.Random()
    ports = []
    while len(ports) < n:
        port = rng.randrange(20000, 32000)
        if port in ports:
            continue
        ok = True
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            ports.append(port)
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


def run_quiet(cmd, timeout=30):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
        return p.stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"({e})"


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def spread(vals):
    """(min, max, coefficient of variation in %) of the rounds."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None, None
    cv = 100.0 * statistics.stdev(vals) / statistics.mean(vals) if len(vals) > 1 else 0.0
    return min(vals), max(vals), cv


def fmt(v, nd=1):
    if v is None:
        return "n/a"
    return f"{v:,.{nd}f}"


# --------------------------------------------------------------------------- the bed

class Bed:
    """weir (TLS listener with http3 and admin), an NGINX origin on two ports (small bodies) and
    `weir whoami` (bulk), each started by this script and stopped by its pid."""

    def __init__(self, a, data_dir):
        self.a = a
        self.data_dir = data_dir
        self.tmp = tempfile.mkdtemp(prefix="weir-bench-h3-")
        # bulk downloads of gtlsclient go to files: in memory where possible
        shm = "/dev/shm"
        self.dl_root = (tempfile.mkdtemp(prefix="weir-bench-h3-", dir=shm)
                        if os.access(shm, os.W_OK) else os.path.join(self.tmp, "dl"))
        os.makedirs(self.dl_root, exist_ok=True)
        (self.origin1, self.origin2, self.whoami_port, self.port, self.admin_port) = free_ports(5)
        self.procs = {}  # name -> Popen
        self.logs = {}
        self.proxy_cpu, self.load_cpu = cpu_sets(a.no_pin)
        self.body = ("h3-bench " * 64)[:a.body_bytes - 1] + "\n"
        assert len(self.body) == a.body_bytes
        self.upload_file = None
        if a.bulk_mib:
            self.upload_file = os.path.join(self.tmp, "upload.bin")
            with open(self.upload_file, "wb") as f:  # sparse: zeros from the page cache
                f.truncate(a.bulk_mib << 20)
        self._cert()
        self._configs()

    def _cert(self):
        self.cert, self.key = os.path.join(self.tmp, "cert.pem"), os.path.join(self.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-sha256", "-days", "30",
                        "-subj", "/CN=bench.local", "-addext",
                        "subjectAltName=DNS:bench.local,IP:127.0.0.1",
                        "-keyout", self.key, "-out", self.cert],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)

    def _configs(self):
        t, a = self.tmp, self.a
        d = os.path.join(t, "origin")
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        self.origin_dir = d
        self.origin_conf = os.path.join(d, "nginx.conf")
        body = self.body.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        with open(self.origin_conf, "w") as f:
            f.write(f"""daemon off;
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
  server {{
    listen 127.0.0.1:{self.origin1} reuseport backlog=4096;
    listen 127.0.0.1:{self.origin2} reuseport backlog=4096;
    add_header X-Origin $server_port always;
    location = /small {{ return 200 "{body}"; }}
    location / {{ return 404; }}
  }}
}}
""")
        self.weir_conf = os.path.join(t, "weir-h3.yaml")
        with open(self.weir_conf, "w") as f:
            f.write(f"""workers: 1
admin:
  listen: 127.0.0.1:{self.admin_port}
limits:
  max_idle_upstream_per_server: 64
  drain_timeout: 1s
  h2_max_concurrent_streams: {a.streams}
  h3_max_concurrent_streams: {a.streams}
listeners:
  - name: https
    listen: 127.0.0.1:{self.port}
    max_connections: 11000
    http3: true
    tls:
      certificates:
        - cert: {self.cert}
          key: {self.key}
      alpn: [h2, http/1.1]
    routes:
      - match: {{ path_prefix: /bulk/ }}
        backend: bulk
    backend: origin
backends:
  - name: origin
    balance: round_robin
    servers:
      - address: 127.0.0.1:{self.origin1}
      - address: 127.0.0.1:{self.origin2}
  - name: bulk
    servers:
      - address: 127.0.0.1:{self.whoami_port}
""")

    def _start(self, name, cmd, cpu, port):
        logf = os.path.join(self.tmp, f"{name}.log")
        self.logs[name] = logf
        p = subprocess.Popen(pin(cmd, cpu), stdout=open(logf, "a"), stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, preexec_fn=_pdeathsig)
        self.procs[name] = p
        if not wait_port(port, 15, p):
            raise CheckFailed(f"{name} did not start: {tail(logf).strip()[-400:]}")
        return p

    def start(self):
        self._start("origin", ["nginx", "-p", self.origin_dir, "-c", self.origin_conf, "-e",
                               os.path.join(self.origin_dir, "error.log")],
                    self.load_cpu, self.origin1)
        wait_port(self.origin2, 10)
        self._start("whoami", [self.a.weir, "whoami", "--listen",
                               f"127.0.0.1:{self.whoami_port}", "--name", "bulk"],
                    self.load_cpu, self.whoami_port)
        chk = run_quiet([self.a.weir, "check", "-c", self.weir_conf])
        self._start("weir", [self.a.weir, "run", "-c", self.weir_conf], self.proxy_cpu, self.port)
        wait_port(self.admin_port, 10)
        time.sleep(0.2)  # the UDP socket is bound with the TCP one; give the workers a moment
        if not self.alive("weir"):
            raise CheckFailed(f"weir died at start: {chk.strip()[-300:]} "
                              f"{tail(self.logs['weir']).strip()[-300:]}")

    def alive(self, name):
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def pid(self, name):
        return self.procs[name].pid

    def close(self):
        for name in ("weir", "whoami", "origin"):
            p = self.procs.pop(name, None)
            if p is None:
                continue
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        try:
            logdir = os.path.join(self.data_dir, "logs")
            os.makedirs(logdir, exist_ok=True)
            for name, path in self.logs.items():
                if os.path.exists(path):
                    shutil.copy(path, os.path.join(logdir, f"{name}.log"))
            shutil.copy(self.weir_conf, os.path.join(logdir, "weir-h3.yaml"))
            shutil.copy(self.origin_conf, os.path.join(logdir, "origin-nginx.conf"))
        except OSError:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.dl_root, ignore_errors=True)

    # ---- admin
    def metrics(self):
        """weir's /metrics: {name or name{labels}: value}."""
        with socket.create_connection(("127.0.0.1", self.admin_port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        _, _, body = data.partition(b"\r\n\r\n")
        out = {}
        for line in body.decode("utf-8", "replace").splitlines():
            if not line or line.startswith("#"):
                continue
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
        return out

    @staticmethod
    def codes(m):
        """weir_requests_total summed by code for the listener `https`."""
        out = {}
        for k, v in m.items():
            if k.startswith("weir_requests_total{") and 'listener="https"' in k:
                c = re.search(r'code="(\d+)"', k)
                if c:
                    out[c.group(1)] = out.get(c.group(1), 0) + v
        return out

    def settled_metrics(self, before, want_200, timeout=3.0):
        """Reads /metrics until the 200s counted since `before` reach want_200 (or time out)."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            got = self.codes(m).get("200", 0) - self.codes(before).get("200", 0)
            if got >= want_200 or time.monotonic() > deadline:
                return m
            time.sleep(0.05)

    # ---- clients
    def url(self, path):
        return f"https://127.0.0.1:{self.port}{path}"

    def gtls_cmd(self, n, path, quiet=True, extra=()):
        cmd = [GTLSCLIENT, "--exit-on-all-streams-close", "--no-quic-dump", "--no-http-dump",
               f"--ciphers={GTLS_CIPHERS}", "--timeout=10s", "--handshake-timeout=10s"]
        if quiet:
            cmd.append("-q")
        return cmd + list(extra) + ["-n", str(n), "127.0.0.1", str(self.port), self.url(path)]


# --------------------------------------------------------------------------- checks

def check_h2(bed):
    out = run_quiet(["curl", "-sS", "--max-time", "5", "--http2", "--cacert", bed.cert,
                     "--tls13-ciphers", OSSL_SUITE, "-w", "\n%{http_code} %{http_version}",
                     bed.url("/small")], timeout=10)
    body, _, status = out.rpartition("\n")
    if status.strip() != "200 2" or body != bed.body:
        raise CheckFailed(f"curl --http2 /small: {status!r}, body {body[:80]!r} (expected 200 "
                          f"over HTTP/2 with the {len(bed.body)}-byte body)")


def check_h3(bed):
    """gtlsclient, not quiet, 4 streams: ALPN h3, every stream 200 with the body, closed with
    H3_NO_ERROR."""
    cmd = [GTLSCLIENT, "--exit-on-all-streams-close", "--no-quic-dump",
           f"--ciphers={GTLS_CIPHERS}", "--timeout=5s", "--handshake-timeout=5s", "-n", "4",
           "127.0.0.1", str(bed.port), bed.url("/small")]
    try:
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=20,
                           preexec_fn=_pdeathsig)
    except subprocess.TimeoutExpired:
        raise CheckFailed("gtlsclient check: no answer within 20 s")
    text = p.stderr.decode("utf-8", "replace")
    alpn = re.search(r"^Negotiated ALPN is (\S+)", text, re.M)
    statuses = re.findall(r"^http: stream 0x[0-9a-f]+ \[:status: (\d+)\]", text, re.M)
    closes = re.findall(r"^HTTP stream \d+ closed with error code (\d+)", text, re.M)
    bodies = [int(x) for x in re.findall(r"^http: stream 0x[0-9a-f]+ body (\d+) bytes", text,
                                         re.M)]
    if (p.returncode != 0 or not alpn or alpn.group(1) != "h3" or statuses != ["200"] * 4
            or closes != ["256"] * 4 or sum(bodies) != 4 * len(bed.body)):
        lines = [ln for ln in text.splitlines() if ln.startswith(("http:", "HTTP", "Negot"))]
        raise CheckFailed(f"gtlsclient check: exit {p.returncode}, ALPN "
                          f"{alpn.group(1) if alpn else None}, statuses {statuses}, closes "
                          f"{closes}, body bytes {sum(bodies)} (expected h3, 4 x 200, 4 x 256 "
                          f"(H3_NO_ERROR), {4 * len(bed.body)}); {' / '.join(lines[-6:])[-400:]}")


# --------------------------------------------------------------------------- measurements

class Meter:
    """weir's, the backend's and the clients' CPU, the wall clock, weir's counters."""

    def __init__(self, bed, backend):
        self.bed, self.backend = bed, backend

    def __enter__(self):
        self.m0 = self.bed.metrics()
        self.w0 = time.monotonic()
        self.t0 = proc_ticks(self.bed.pid("weir"))
        self.s0 = proc_sched_ns(self.bed.pid("weir"))
        self.u0 = udp_snmp()
        self.d0 = udp_socket_drops(self.bed.port)
        self.j0 = [cpu_jiffies(self.bed.proxy_cpu), cpu_jiffies(self.bed.load_cpu)]
        self.b0 = proc_ticks(self.bed.pid(self.backend))
        self.c0 = children_cpu_s()
        return self

    def stop(self):
        self.wall = time.monotonic() - self.w0
        self.c1 = children_cpu_s()
        if not self.bed.alive("weir"):
            raise CheckFailed(f"weir died during the run (exit {self.bed.procs['weir'].poll()}): "
                              f"{tail(self.bed.logs['weir']).strip()[-400:]}")
        self.t1 = proc_ticks(self.bed.pid("weir"))
        self.s1 = proc_sched_ns(self.bed.pid("weir"))
        self.u1 = udp_snmp()
        self.u1["weir_socket_drops"] = udp_socket_drops(self.bed.port) - self.d0
        self.j1 = [cpu_jiffies(self.bed.proxy_cpu), cpu_jiffies(self.bed.load_cpu)]
        self.b1 = proc_ticks(self.bed.pid(self.backend))
        self.rss = proc_rss_kib(self.bed.pid("weir"))

    def __exit__(self, *exc):
        return False

    def cores(self, weir_s):
        """Busy % of weir's CPU and of the load CPU during the run; on weir's CPU, the part
        that was not weir (other processes of the machine: the cause of most variance), and
        the hypervisor's steal."""
        out = {}
        for name, a, b in (("weir_core", self.j0[0], self.j1[0]),
                           ("load_core", self.j0[1], self.j1[1])):
            if a and b and b[1] > a[1]:
                total = b[1] - a[1]
                out[f"{name}_busy_pct"] = 100.0 * (b[0] - a[0]) / total
                out[f"{name}_steal_pct"] = 100.0 * (b[2] - a[2]) / total
                if name == "weir_core":
                    out["weir_core_others_pct"] = max(
                        0.0, out["weir_core_busy_pct"] - 100.0 * weir_s * CLK_TCK / total)
        return out

    def figures(self, units):
        weir_s = (self.t1 - self.t0) / CLK_TCK
        return {**self.cores(weir_s),"wall_s": self.wall, "weir_cpu_s": weir_s,
                "weir_cpu_us_per": weir_s * 1e6 / units,
                "weir_sched_us_per": (self.s1 - self.s0) / 1e3 / units,
                "udp": {k: self.u1[k] - self.u0.get(k, 0) for k in self.u1},  # deltas
                "weir_cpu_pct": 100.0 * weir_s / self.wall,
                "client_cpu_us_per": (self.c1 - self.c0) * 1e6 / units,
                "client_cpu_pct": 100.0 * (self.c1 - self.c0) / self.wall,
                "backend_cpu_pct": 100.0 * (self.b1 - self.b0) / CLK_TCK / self.wall,
                "weir_rss_mib": self.rss / 1024.0}


def counter_deltas(bed, m0, m1):
    c0, c1 = bed.codes(m0), bed.codes(m1)
    codes = {c: c1.get(c, 0) - c0.get(c, 0) for c in set(c0) | set(c1)}
    codes = {c: int(n) for c, n in codes.items() if n}
    quic = {k: int(m1.get(k, 0) - m0.get(k, 0)) for k in QUIC_COUNTERS}
    quic["weir_quic_connections_open"] = int(m1.get("weir_quic_connections_open", 0))
    return codes, quic


def verify_counts(codes, quic, want, proto, conns):
    bad = {c: n for c, n in codes.items() if c != "200"}
    if codes.get("200", 0) != want or bad:
        raise CheckFailed(f"weir counted {codes.get('200', 0)} x 200 for {want} requests"
                          + (f", and other codes {bad}" if bad else ""))
    key = "weir_http3_connections_total" if proto == "h3" else "weir_h2_connections_total"
    if conns is not None and quic[key] != conns:
        raise CheckFailed(f"{key} grew by {quic[key]}, expected {conns} connections")


def run_h2_small(bed, a, rundir, tag):
    check_h2(bed)
    cmd = ["h2load", "-t1", f"-c{a.conns}", f"-m{a.streams}", "-n", str(a.requests),
           "--tls13-ciphers", OSSL_SUITE, bed.url("/small")]
    with Meter(bed, "origin") as mt:
        try:
            p = subprocess.run(pin(cmd, bed.load_cpu), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=a.timeout,
                               preexec_fn=_pdeathsig)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"h2load did not finish within {a.timeout} s")
        mt.stop()
    out = p.stdout
    with open(os.path.join(rundir, f"{tag}.h2load.txt"), "w") as f:
        f.write(" ".join(cmd) + "\n" + out)
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    codes_line = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    traffic = re.search(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers.*?\((\d+)\) data",
                        out)
    if not (req and codes_line and proto):
        raise CheckFailed(f"h2load gave no summary (exit {p.returncode}): "
                          f"{' / '.join(out.strip().splitlines()[-3:])[-300:]}")
    if proto.group(1) != "h2":
        raise CheckFailed(f"h2load negotiated {proto.group(1)}, not h2")
    if int(req.group(4)) != a.requests or int(codes_line.group(1)) != a.requests:
        raise CheckFailed(f"h2load: {req.group(0)}; {codes_line.group(0)}")
    if traffic and int(traffic.group(3)) != a.requests * len(bed.body):
        raise CheckFailed(f"h2load received {traffic.group(3)} bytes of DATA, expected "
                          f"{a.requests * len(bed.body)}")
    m1 = bed.settled_metrics(mt.m0, a.requests)
    codes, quic = counter_deltas(bed, mt.m0, m1)
    verify_counts(codes, quic, a.requests, "h2", a.conns)
    r = mt.figures(a.requests)
    r.update({"requests": a.requests, "rps": a.requests / mt.wall, "codes": codes,
              "counters": quic, "client": "h2load", "conns": a.conns})
    return r


def _gtls_clients(bed, a, cmds, rundir, tag):
    """Starts the gtlsclient processes at once (pinned to the load CPU), waits for all of them
    (bounded); stdout to /dev/null, stderr (quiet: errors only) kept per client."""
    procs, errs = [], []
    try:
        for i, cmd in enumerate(cmds):
            path = os.path.join(rundir, f"{tag}.gtlsclient{i + 1}.err")
            errs.append(path)
            procs.append(subprocess.Popen(pin(cmd, bed.load_cpu), stdout=subprocess.DEVNULL,
                                          stderr=open(path, "w"), stdin=subprocess.DEVNULL,
                                          preexec_fn=_pdeathsig))
        deadline = time.monotonic() + a.timeout
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise CheckFailed(f"gtlsclient did not finish within {a.timeout} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
    if failed:
        i, rc = failed[0]
        raise CheckFailed(f"{len(failed)} gtlsclient exited non-zero (client {i + 1}: exit "
                          f"{rc}): {tail(errs[i], 3).strip()[-300:]}")
    return [open(e, errors="replace").read() for e in errs]


def run_h3_small(bed, a, rundir, tag):
    check_h3(bed)
    per = [a.requests // a.conns + (1 if i < a.requests % a.conns else 0)
           for i in range(a.conns)]
    cmds = [bed.gtls_cmd(n, "/small") for n in per]
    with open(os.path.join(rundir, f"{tag}.cmd.txt"), "w") as f:
        f.write("\n".join(" ".join(c) for c in cmds) + "\n")
    with Meter(bed, "origin") as mt:
        errs = _gtls_clients(bed, a, cmds, rundir, tag)
        mt.stop()
    m1 = bed.settled_metrics(mt.m0, a.requests)
    codes, quic = counter_deltas(bed, mt.m0, m1)
    verify_counts(codes, quic, a.requests, "h3", a.conns)
    r = mt.figures(a.requests)
    r.update({"requests": a.requests, "rps": a.requests / mt.wall, "codes": codes,
              "counters": quic, "client": "gtlsclient", "conns": a.conns,
              "client_stderr_bytes": sum(len(e) for e in errs)})
    return r


def _whoami_body_length(text):
    m = re.search(r"^Body-Length: (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


def run_h2_bulk(bed, a, rundir, tag, direction):
    n = a.bulk_mib << 20
    check_h2(bed)
    resp = os.path.join(bed.tmp, f"{tag}.resp")
    cmd = ["curl", "-sS", "--http2", "--cacert", bed.cert, "--tls13-ciphers", OSSL_SUITE,
           "--max-time", str(a.timeout), "-w", "%{http_code} %{http_version} %{size_download} "
           "%{size_upload}"]
    if direction == "down":
        cmd += ["-o", "/dev/null", bed.url(f"/bulk/down?size={n}")]
    else:
        cmd += ["-T", bed.upload_file, "-X", "POST", "-o", resp, bed.url("/bulk/up")]
    with Meter(bed, "whoami") as mt:
        try:
            p = subprocess.run(pin(cmd, bed.load_cpu), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=a.timeout + 10,
                               preexec_fn=_pdeathsig)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"curl did not finish within {a.timeout} s")
        mt.stop()
    parts = p.stdout.strip().split()
    if p.returncode != 0 or len(parts) != 4 or parts[:2] != ["200", "2"]:
        raise CheckFailed(f"curl --http2 {direction}: exit {p.returncode}: {p.stdout[-300:]!r}")
    if direction == "down":
        got = int(parts[2])
        if not n <= got < n + 8192:
            raise CheckFailed(f"h2 download: {got} bytes, expected {n} + whoami's few lines")
    else:
        got = _whoami_body_length(open(resp, errors="replace").read())
        os.remove(resp)
        if got != n or int(parts[3]) != n:
            raise CheckFailed(f"h2 upload: the backend read {got} bytes, curl sent {parts[3]}, "
                              f"expected {n}")
    m1 = bed.settled_metrics(mt.m0, 1)
    codes, quic = counter_deltas(bed, mt.m0, m1)
    verify_counts(codes, quic, 1, "h2", 1)
    r = mt.figures(a.bulk_mib)
    r.update({"mib": a.bulk_mib, "mib_per_s": a.bulk_mib / mt.wall, "bytes": got,
              "codes": codes, "counters": quic, "client": "curl --http2"})
    return r


def run_h3_bulk(bed, a, rundir, tag, direction):
    n = a.bulk_mib << 20
    check_h3(bed)
    dl = os.path.join(bed.dl_root, tag)
    os.makedirs(dl)
    extra = [f"--download={dl}"]
    if direction == "down":
        path = f"/bulk/down?size={n}"
    else:
        path = "/bulk/up"
        extra += ["-d", bed.upload_file, "-m", "POST"]
    cmd = bed.gtls_cmd(1, path, extra=extra)
    with open(os.path.join(rundir, f"{tag}.cmd.txt"), "w") as f:
        f.write(" ".join(cmd) + "\n")
    try:
        with Meter(bed, "whoami") as mt:
            _gtls_clients(bed, a, [cmd], rundir, tag)
            mt.stop()
        files = [os.path.join(dl, x) for x in os.listdir(dl)]
        if len(files) != 1:
            raise CheckFailed(f"gtlsclient {direction}: {len(files)} files downloaded, expected 1")
        if direction == "down":
            got = os.path.getsize(files[0])
            if not n <= got < n + 8192:
                raise CheckFailed(f"h3 download: {got} bytes, expected {n} + whoami's few lines")
        else:
            got = _whoami_body_length(open(files[0], errors="replace").read())
            if got != n:
                raise CheckFailed(f"h3 upload: the backend read {got} bytes, expected {n}")
    finally:
        shutil.rmtree(dl, ignore_errors=True)
    m1 = bed.settled_metrics(mt.m0, 1)
    codes, quic = counter_deltas(bed, mt.m0, m1)
    verify_counts(codes, quic, 1, "h3", 1)
    r = mt.figures(a.bulk_mib)
    r.update({"mib": a.bulk_mib, "mib_per_s": a.bulk_mib / mt.wall, "bytes": got,
              "codes": codes, "counters": quic, "client": "gtlsclient"})
    return r


TESTS = [  # id, protocol, function, kind
    ("small", "h2", run_h2_small), ("small", "h3", run_h3_small),
    ("down", "h2", lambda b, a, d, t: run_h2_bulk(b, a, d, t, "down")),
    ("down", "h3", lambda b, a, d, t: run_h3_bulk(b, a, d, t, "down")),
    ("up", "h2", lambda b, a, d, t: run_h2_bulk(b, a, d, t, "up")),
    ("up", "h3", lambda b, a, d, t: run_h3_bulk(b, a, d, t, "up")),
]


def summarize(test, proto, r):
    if r.get("failed"):
        return f"FAILED: {r['failed'][:300]}"
    q = r["counters"]
    quic = " ".join(f"{k.replace('weir_quic_', '').replace('_total', '')}={q[k]}"
                    for k in BAD_QUIC)
    if test == "small":
        s = (f"{r['rps']:,.0f} req/s, weir {r['weir_cpu_us_per']:.1f} us/req "
             f"({r['weir_cpu_pct']:.0f}% of a core), client {r['client_cpu_us_per']:.1f} us/req "
             f"({r['client_cpu_pct']:.0f}%), origin {r['backend_cpu_pct']:.0f}%, upstream "
             f"connects {q['weir_upstream_connects_total']} reuses "
             f"{q['weir_upstream_reuses_total']}")
    else:
        s = (f"{r['mib_per_s']:,.1f} MiB/s, weir {r['weir_cpu_us_per']:.0f} us/MiB "
             f"({r['weir_cpu_pct']:.0f}% of a core), client {r['client_cpu_us_per']:.0f} us/MiB")
    if "weir_core_busy_pct" in r:
        s += (f"; weir's CPU {r['weir_core_busy_pct']:.0f}% busy (others "
              f"{r['weir_core_others_pct']:.0f}%, steal {r['weir_core_steal_pct']:.0f}%), load "
              f"CPU {r.get('load_core_busy_pct', 0):.0f}%")
    if proto == "h3":
        s += f"; quic +{quic} open={q['weir_quic_connections_open']}"
        u = r.get("udp", {})
        s += (f"; kernel UDP in {u.get('InDatagrams', 0)} out {u.get('OutDatagrams', 0)} "
              f"errors: in {u.get('InErrors', 0)} rcvbuf {u.get('RcvbufErrors', 0)} sndbuf "
              f"{u.get('SndbufErrors', 0)}, weir's socket drops {u.get('weir_socket_drops', 0)}")
    return s


def measure(a, rundir):
    """All rounds; returns the results dict (runs, quic counters, environment)."""
    bed = Bed(a, rundir)
    res = {"params": {k: getattr(a, k) for k in ("rounds", "requests", "conns", "streams",
                                                  "body_bytes", "bulk_mib", "quick")},
           "runs": {f"{t}-{p}": [] for t, p, _ in TESTS if t == "small" or a.bulk_mib},
           "quic_after_round": [], "pinning": {"weir_cpu": bed.proxy_cpu,
                                               "load_cpu": bed.load_cpu}}
    try:
        bed.start()
        res["ports"] = {"https": bed.port, "admin": bed.admin_port}
        log(f"weir :{bed.port} (TCP h2 + UDP h3), admin :{bed.admin_port}; origin "
            f":{bed.origin1} :{bed.origin2}; whoami :{bed.whoami_port}; weir on CPU "
            f"{bed.proxy_cpu}, clients and backends on CPU {bed.load_cpu}")
        # warm-up: a few thousand requests of each protocol
        check_h2(bed)
        check_h3(bed)
        subprocess.run(pin(["h2load", "-t1", f"-c{a.conns}", f"-m{a.streams}", "-n", "2000",
                            bed.url("/small")], bed.load_cpu), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        _gtls_clients(bed, a, [bed.gtls_cmd(500, "/small") for _ in range(a.conns)],
                      bed.tmp, "warmup")
        for rnd in range(1, a.rounds + 1):
            for test, proto, fn in TESTS:
                key = f"{test}-{proto}"
                if key not in res["runs"]:
                    continue
                tag = f"{key}-r{rnd}"
                if not bed.alive("weir"):
                    raise CheckFailed(f"weir is not running (exit {bed.procs['weir'].poll()}): "
                                      f"{tail(bed.logs['weir']).strip()[-400:]}")
                try:
                    r = fn(bed, a, rundir, tag)
                except (CheckFailed, OSError, ValueError, subprocess.SubprocessError) as e:
                    r = {"failed": f"{type(e).__name__}: {e}"}
                    log(f"ERROR {tag}: {r['failed']}")
                res["runs"][key].append(r)
                log(f"{tag}: {summarize(test, proto, r)}")
                time.sleep(0.3)
            m = bed.metrics()
            q = {k: int(m.get(k, 0)) for k in QUIC_COUNTERS}
            res["quic_after_round"].append(q)
            log(f"round {rnd}: weir /metrics (cumulative): "
                + " ".join(f"{k}={v}" for k, v in q.items()))
        res["weir_log_tail"] = tail(bed.logs["weir"], 20)
    finally:
        bed.close()
    return res


# --------------------------------------------------------------------------- report

def environment(weir):
    def first_line(cmd):
        out = run_quiet(cmd, timeout=10).strip().splitlines()
        return out[0] if out else "n/a"
    cpu = "n/a"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       "n/a")
    except OSError:
        pass
    pkgs = run_quiet(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", "ngtcp2-client",
                      "nghttp2-client", "libngtcp2-16", "libnghttp3-9", "curl"], timeout=10)
    return {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "nproc": os.cpu_count(),
            "cpu": cpu, "kernel": platform.release(),
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "weir": first_line([weir, "--version"]),
            "packages": [ln for ln in pkgs.splitlines() if ln and "no packages" not in ln]}


def _agg(runs, key):
    vals = [r.get(key) for r in runs if not r.get("failed")]
    return med(vals), spread(vals)


def markdown(res):
    p, env = res["params"], res["env"]
    L = ["# HTTP/3 against HTTP/2 through weir", "",
         f"{env['date']}, {env['nproc']} CPUs ({env['cpu']}), kernel {env['kernel']}, load "
         f"average at the start {env['loadavg']}; weir: {env['weir']}; "
         f"{'; '.join(env['packages'])}.", "",
         f"`bench/h3_scenarios.py`: {p['rounds']} round(s); small: {p['requests']:,} GETs of "
         f"{p['body_bytes']} bytes over {p['conns']} connections x {p['streams']} streams "
         f"(h2: `h2load -c{p['conns']} -m{p['streams']}`; h3: {p['conns']} `gtlsclient -q "
         f"-n {p['requests'] // p['conns']}` in parallel, weir's `h3_max_concurrent_streams: "
         f"{p['streams']}`)" + (f"; bulk: one {p['bulk_mib']} MiB download and one "
                                f"{p['bulk_mib']} MiB upload (curl --http2, gtlsclient)"
                                if p["bulk_mib"] else "") + ". "
         f"Pinning: weir on CPU {res['pinning']['weir_cpu']}, clients and backends on CPU "
         f"{res['pinning']['load_cpu']}. Figures: median of the rounds (min-max, coefficient "
         f"of variation).", ""]
    runs = res["runs"]

    def row(test, proto, unit, rate_key):
        rs = runs.get(f"{test}-{proto}", [])
        failed = sum(1 for r in rs if r.get("failed"))
        rate, (lo, hi, cv) = _agg(rs, rate_key)
        cpu, (clo, chi, ccv) = _agg(rs, "weir_cpu_us_per")
        nd = 0 if test == "small" else 1
        return (f"| {test} | {proto} | {fmt(rate, nd)} | {fmt(lo, nd)}-{fmt(hi, nd)} "
                f"({fmt(cv, 1)} %) | {fmt(cpu, 1 if test == 'small' else 0)} | "
                f"{fmt(clo, 1 if test == 'small' else 0)}-{fmt(chi, 1 if test == 'small' else 0)}"
                f" ({fmt(ccv, 1)} %) | "
                f"{fmt(_agg(rs, 'weir_sched_us_per')[0], 1 if test == 'small' else 0)} | "
                f"{fmt(_agg(rs, 'weir_cpu_pct')[0], 0)} | "
                f"{fmt(_agg(rs, 'client_cpu_us_per')[0], 1 if test == 'small' else 0)} | "
                f"{fmt(_agg(rs, 'backend_cpu_pct')[0], 0)} | "
                f"{fmt(_agg(rs, 'weir_rss_mib')[0], 1)} | "
                f"{fmt(_agg(rs, 'weir_core_others_pct')[0], 0)} / "
                f"{fmt(_agg(rs, 'load_core_busy_pct')[0], 0)} | "
                f"{len(rs) - failed}/{len(rs)} |")

    L += ["| test | protocol | req/s | min-max (CV) | weir CPU µs/req | min-max (CV) | "
          "(schedstat) | weir CPU % | client CPU µs/req | backend CPU % | weir RSS MiB | "
          "others on weir's CPU % / load CPU busy % | runs ok |",
          "| --- | --- " + "| ---: " * 11 + "|",
          row("small", "h2", "req", "rps"), row("small", "h3", "req", "rps")]
    if p["bulk_mib"]:
        L += ["", "| test | protocol | MiB/s | min-max (CV) | weir CPU µs/MiB | min-max (CV) | "
              "(schedstat) | weir CPU % | client CPU µs/MiB | backend CPU % | weir RSS MiB | "
              "others on weir's CPU % / load CPU busy % | runs ok |",
              "| --- | --- " + "| ---: " * 11 + "|"]
        for t in ("down", "up"):
            L += [row(t, "h2", "MiB", "mib_per_s"), row(t, "h3", "MiB", "mib_per_s")]
    L += ["", "**HTTP/3 ÷ HTTP/2** (medians; per round in brackets):", ""]
    for test, rate_key, what in (("small", "rps", "req/s"), ("down", "mib_per_s", "MiB/s"),
                                 ("up", "mib_per_s", "MiB/s")):
        h2, h3 = runs.get(f"{test}-h2"), runs.get(f"{test}-h3")
        if not h2 or not h3:
            continue
        parts = []
        for key, label in ((rate_key, what), ("weir_cpu_us_per",
                                              "weir CPU per " + ("request" if test == "small"
                                                                 else "MiB"))):
            m2, m3 = _agg(h2, key)[0], _agg(h3, key)[0]
            per = [f"{y[key] / x[key]:.2f}" for x, y in zip(h2, h3)
                   if not x.get("failed") and not y.get("failed") and x[key]]
            parts.append(f"{label} **{m3 / m2:.2f}**" if m2 and m3 else f"{label} n/a")
            parts[-1] += f" ({', '.join(per)})" if per else ""
        L.append(f"- {test}: " + "; ".join(parts))
    # QUIC counters: deltas summed over the HTTP/3 runs
    tot = {k: 0 for k in BAD_QUIC}
    udp = {k: 0 for k in ("InErrors", "RcvbufErrors", "SndbufErrors", "weir_socket_drops")}
    for key, rs in runs.items():
        if key.endswith("-h3"):
            for r in rs:
                for k in BAD_QUIC:
                    tot[k] += r.get("counters", {}).get(k, 0)
                for k in udp:
                    udp[k] += r.get("udp", {}).get(k, 0)
    last = res["quic_after_round"][-1] if res["quic_after_round"] else {}
    L += ["", "weir's QUIC counters, summed over the HTTP/3 runs: "
          + ", ".join(f"`{k}` {v}" for k, v in tot.items())
          + (" (**not all 0**)" if any(tot.values()) else " (all 0)")
          + "; `weir_quic_connections_open` at the end "
          + f"{last.get('weir_quic_connections_open', 'n/a')}"
          + f"; `weir_http3_connections_total` {last.get('weir_http3_connections_total', 'n/a')}, "
          f"`weir_h2_connections_total` {last.get('weir_h2_connections_total', 'n/a')}. "
          f"The kernel's UDP counters during the HTTP/3 runs (host-wide, /proc/net/snmp; "
          f"weir_socket_drops: weir's own socket, /proc/net/udp): "
          + ", ".join(f"{k} {v}" for k, v in udp.items())
          + (" (none lost)" if not any(udp.values())
             else " (**weir's socket dropped datagrams**: its receive buffer was full)"
             if udp["weir_socket_drops"] else
             " (datagrams dropped by the kernel, none on weir's socket: a client's receive "
             "buffer, or another process of the machine; QUIC retransmits them)") + ".", ""]
    fails = [(k, i + 1, r["failed"]) for k, rs in runs.items() for i, r in enumerate(rs)
             if r.get("failed")]
    if fails:
        L += ["**Failures:**", ""] + [f"- {k} round {i}: {msg}" for k, i, msg in fails] + [""]
    L += ["req/s (MiB/s): the clients' wall clock, from the start of all clients to the exit of "
          "the last (connections and handshakes included). *weir CPU µs/req*: weir's utime + "
          "stime (/proc/PID/stat) over the run ÷ requests (÷ MiB for bulk): the figure that "
          "compares the protocols, since the clients differ (h2load and curl are OpenSSL and "
          "nghttp2, gtlsclient is ngtcp2's example client over GnuTLS); *(schedstat)*: the "
          "same from the threads' on-CPU time in ns (/proc/PID/task/*/schedstat), a cross-"
          "check of the 10 ms ticks on short runs. *client CPU*: the "
          "clients' own rusage; *backend CPU %*: the NGINX origin (small) or `weir whoami` "
          "(bulk), sharing the load CPU with the clients. *others on weir's CPU*: that CPU's busy "
          "time (/proc/stat) minus weir's, i.e. other processes of the machine taking weir's "
          "core (and so its req/s); *load CPU busy*: the clients' and backend's CPU, all "
          "processes. Every request is checked: weir's "
          "`weir_requests_total` must grow by exactly the run's requests, all 200.", ""]
    return L


def _terminate(signum, frame):
    # run.sh's `timeout`, or a user's kill: unwind so that every `finally` stops what it started
    raise SystemExit(128 + signum)


def main():
    signal.signal(signal.SIGTERM, _terminate)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--weir", default=os.environ.get("WEIR_BIN", os.path.join(
        ROOT, "build/release/weir")), help="weir binary (default: $WEIR_BIN or "
                                           "build/release/weir); also the bulk backend (whoami)")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    ap.add_argument("--requests", type=int, default=60000,
                    help="small GETs per run (60000: a few seconds, hundreds of CPU ticks)")
    ap.add_argument("--conns", type=int, default=4,
                    help="connections: h2load -c, gtlsclient processes (4)")
    ap.add_argument("--streams", type=int, default=32,
                    help="streams in flight per connection: h2load -m, weir's "
                         "h[23]_max_concurrent_streams (32)")
    ap.add_argument("--body-bytes", type=int, default=100, help="small response body (100)")
    ap.add_argument("--bulk-mib", type=int, default=100,
                    help="one download and one upload of this size per protocol (100; 0: none)")
    ap.add_argument("--timeout", type=int, default=120, help="limit per run, seconds (120)")
    ap.add_argument("--quick", action="store_true",
                    help="1 round, 6000 requests, 20 MiB bulk; report in bench/results/raw/quick")
    ap.add_argument("--no-pin", action="store_true", help="no CPU pinning")
    ap.add_argument("--out", help="raw data directory (default: bench/results/raw/h3-DATE, or "
                                  "$BENCH_OUT/h3-DATE)")
    ap.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.requests, a.bulk_mib = 1, min(a.requests, 6000), min(a.bulk_mib, 20)
    if a.body_bytes < 1 or a.conns < 1 or a.streams < 1 or a.requests < a.conns or a.rounds < 1:
        sys.exit("h3: --body-bytes, --conns, --streams, --rounds must be >= 1 and --requests "
                 ">= --conns")
    missing = [t for t in ("h2load", "curl", "nginx", "openssl") if not shutil.which(t)]
    if not os.access(GTLSCLIENT, os.X_OK):
        missing.append("gtlsclient (apt-get install ngtcp2-client)")
    if missing:
        sys.exit(f"h3: missing {', '.join(missing)}")
    if not os.access(a.weir, os.X_OK):
        sys.exit(f"h3: weir binary not found at {a.weir} (build it: make release)")
    out_env = os.environ.get("BENCH_OUT")
    md_dir = (os.path.abspath(out_env) if out_env
              else os.path.join(RESULTS, "raw", "quick") if a.quick else RESULTS)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    rundir = a.out or os.path.join(md_dir if out_env or a.quick else os.path.join(RESULTS, "raw"),
                                   f"h3-{stamp}")
    os.makedirs(rundir, exist_ok=True)
    os.makedirs(md_dir, exist_ok=True)
    env = environment(a.weir)
    res = measure(a, rundir)
    res["env"] = env
    res["rundir"] = (os.path.relpath(rundir, ROOT) if rundir.startswith(ROOT + os.sep)
                     else rundir)
    with open(os.path.join(rundir, "h3.json"), "w") as f:
        json.dump(res, f, indent=1)
    md = "\n".join(markdown(res)) + f"\nRaw data: `{res['rundir']}`.\n"
    with open(os.path.join(md_dir, "h3-latest.md"), "w") as f:
        f.write(md)
    with open(os.path.join(rundir, "h3.md"), "w") as f:
        f.write(md)
    print(json.dumps(res, indent=1) if a.json else "\n" + md)
    md_path = os.path.join(md_dir, "h3-latest.md")
    shown = os.path.relpath(md_path, ROOT) if md_path.startswith(ROOT + os.sep) else md_path
    log(f"report: {shown}; raw data: {res['rundir']}")
    failed = sum(1 for rs in res["runs"].values() for r in rs if r.get("failed"))
    if failed:
        log(f"ERROR: {failed} run(s) failed (see Failures in the report)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
