"""Scenarios 7-9 of the benchmark harness: TLS termination and HTTP/2 (see bench/README.md).

  7  new TLS connections per second, full and resumed handshakes (`openssl s_time`, 4 clients)
  8  HTTPS keep-alive GETs over HTTP/1.1 (wrk, 50 connections), as scenario 1 but over TLS
  9  HTTPS keep-alive GETs over HTTP/2 (h2load, 10 connections x 10 streams)

They run after scenarios 1-6, on a bed of their own: the same origin and the same proxy
configurations, except that each proxy's one listener speaks TLS (one ECDSA P-256 certificate
for all three) and offers h2 and http/1.1 by ALPN. A proxy that cannot load its TLS config
(weir until TLS lands) fails only these runs, each of them recorded as failed.

Imported by bench.py (`import bench` below is bench.py itself, see the end of bench.py).
"""

import os
import re
import socket
import ssl
import subprocess
import time

import bench as B

# Offered alone by the clients that can be told (s_time, h2load), so that every proxy
# negotiates the same one whatever its own preference; wrk and the checks offer OpenSSL's
# default list, which starts with it too.
TLS13_SUITE = "TLS_AES_256_GCM_SHA384"
TLS_CLIENTS = int(os.environ.get("BENCH_TLS_CLIENTS", "4"))  # parallel s_time processes
# `openssl s_time -www PATH` sends "GET PATH HTTP/1.0\r\n\r\n": no Host, which NGINX's proxy
# config (`proxy_set_header Host $http_host`, as in scenarios 1-6) would forward as an HTTP/1.1
# request without Host, and the origin answers 400. So PATH carries the rest of a normal request
# and s_time's trailing " HTTP/1.0" lands in a dummy header. The wire bytes:
S_TIME_WWW = "/ HTTP/1.1\r\nHost: bench.local\r\nConnection: close\r\nX-Bench:"
S_TIME_REQUEST = f"GET {S_TIME_WWW} HTTP/1.0\r\n\r\n".encode()

TLS_SCENARIOS = [
    {"id": "s7-full", "group": "s7", "kind": "handshake", "mode": "new", "clients": TLS_CLIENTS,
     "title": f"7a. new TLS connections, full handshake + 1 GET, {TLS_CLIENTS} clients"},
    {"id": "s7-resumed", "group": "s7", "kind": "handshake", "mode": "reuse",
     "clients": TLS_CLIENTS,
     "title": f"7b. new TLS connections, resumed handshake + 1 GET, {TLS_CLIENTS} clients"},
    {"id": "s8", "kind": "wrk", "scheme": "https", "conns": 50, "path": "/",
     "title": "8. HTTPS keep-alive GET (HTTP/1.1), 12 B, 50 conns"},
    {"id": "s9", "kind": "h2load", "conns": 10, "streams": 10, "path": "/",
     "title": "9. HTTPS keep-alive GET (h2), 12 B, 10 conns x 10 streams"},
]


# --------------------------------------------------------------------------- certificate

def make_cert(d):
    """One self-signed ECDSA P-256 certificate (SAN 127.0.0.1 and bench.local) for all three
    proxies, made once with the openssl CLI and kept while it is valid for 30 more days."""
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, "bench-ecdsa-p256.pem"), os.path.join(d, "bench-ecdsa-p256.key")
    combined = os.path.join(d, "bench-ecdsa-p256.combined.pem")  # HAProxy: cert + key
    valid = (all(os.path.exists(p) for p in (cert, key, combined)) and subprocess.run(
        ["openssl", "x509", "-checkend", str(30 * 86400), "-noout", "-in", cert],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0)
    if not valid:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-sha256", "-days", "3650",
                        "-subj", "/CN=bench.local", "-addext",
                        "subjectAltName=DNS:bench.local,IP:127.0.0.1",
                        "-keyout", key, "-out", cert],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
        with open(combined, "w") as f:
            f.write(open(cert).read() + open(key).read())
        B.log(f"made the TLS certificate {os.path.relpath(cert, B.ROOT)}")
    fp = B.run_quiet(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-enddate",
                      "-in", cert])
    return {"cert": cert, "key": key, "combined": combined, "info": " ".join(fp.split())}


# --------------------------------------------------------------------------- the TLS bed

class TlsBed(B.Bed):
    """Bed with the same origin and configs, each proxy's listener turned into a TLS one."""

    log_subdir = "logs-tls"

    def __init__(self, weir_bin, data_dir, cert):
        self.cert = cert
        self.negotiated = {}  # name -> what the HTTP/1.1 check negotiated
        super().__init__(weir_bin, data_dir)

    @staticmethod
    def _edit(path, new_path, edits):
        text = open(path).read()
        for old, new in edits:
            assert old in text, f"{os.path.basename(path)}: {old!r} not found"
            text = text.replace(old, new)
        with open(new_path, "w") as f:
            f.write(text)
        return new_path

    def _write_configs(self):
        super()._write_configs()
        c = self.cert
        # weir: the contract's `tls:` block (spec/contract.md, "TLS and HTTP/2")
        self.weir_conf = self._edit(self.weir_conf, os.path.join(self.tmp, "weir-tls.yaml"), [
            (f"  - name: bench\n    listen: 127.0.0.1:{self.port_weir}\n",
             f"  - name: https\n    listen: 127.0.0.1:{self.port_weir}\n"
             f"    tls:\n      certificates:\n        - cert: {c['cert']}\n"
             f"          key: {c['key']}\n      alpn: [h2, http/1.1]\n")])
        # HAProxy: tune.ssl.* left at their defaults (session cache and tickets on)
        self.haproxy_conf = self._edit(
            self.haproxy_conf, os.path.join(self.tmp, "haproxy-tls.cfg"), [
                (f"  bind 127.0.0.1:{self.port_haproxy}\n",
                 f"  bind 127.0.0.1:{self.port_haproxy} ssl crt {c['combined']} "
                 f"alpn h2,http/1.1\n"),
                ("X-Forwarded-Proto http\n", "X-Forwarded-Proto https\n")])
        # NGINX: `ssl_session_cache` left at its default (none): resumption by session tickets
        self.nginx_conf = self._edit(
            self.nginx_conf, os.path.join(self.nginx_dir, "nginx-tls.conf"), [
                (f"    listen 127.0.0.1:{self.port_nginx} backlog=4096;\n",
                 f"    listen 127.0.0.1:{self.port_nginx} ssl http2 backlog=4096;\n"
                 f"    ssl_certificate {c['cert']};\n"
                 f"    ssl_certificate_key {c['key']};\n"
                 f"    ssl_protocols TLSv1.2 TLSv1.3;\n"
                 f"    ssl_session_tickets on;\n")])

    # ---- checks, all over TLS, verifying the proxy's certificate against ours
    def https_request(self, name, request, alpn=("http/1.1",), timeout=5.0):
        """Sends one raw request, reads until the proxy closes; (status, headers, body, tls)."""
        ctx = ssl.create_default_context(cafile=self.cert["cert"])
        ctx.set_alpn_protocols(list(alpn))
        with socket.create_connection(("127.0.0.1", self.ports[name]), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(request)
                data = b""
                while True:
                    try:
                        chunk = s.recv(65536)
                    except socket.timeout:
                        raise RuntimeError(f"{name}: no close within {timeout} s after the "
                                           f"response to {request[:20]!r}")
                    if not chunk:
                        break
                    data += chunk
                tls = {"version": s.version(), "cipher": s.cipher()[0],
                       "alpn": s.selected_alpn_protocol()}
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/"):
            raise RuntimeError(f"{name}: not an HTTP response over TLS: {data[:80]!r}")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(lines[0].split()[1]), headers, body, tls

    def check_balance(self, name):
        """HTTP/1.1 over TLS: 200, the body intact, both origins used."""
        seen = set()
        for _ in range(6):
            st, h, body, tls = self.https_request(
                name, b"GET / HTTP/1.1\r\nHost: bench.local\r\nConnection: close\r\n\r\n")
            if st != 200 or body != B.BODY_12.encode():
                raise RuntimeError(f"{name}: unexpected answer over TLS {st} {body[:80]!r}")
            seen.add(h.get("x-origin"))
        if len(seen) != 2:
            raise RuntimeError(f"{name}: expected both origins to be used, saw {seen}")
        self.negotiated[name] = tls

    def check_s_time_request(self, name):
        """Exactly what scenario 7's `openssl s_time` sends; it reads until the proxy closes."""
        st, _, body, _ = self.https_request(name, S_TIME_REQUEST)
        if st != 200 or body != B.BODY_12.encode():
            raise RuntimeError(f"{name}: s_time's GET over TLS answered {st} {body[:80]!r}")

    def check_curl(self, name, flag, want):
        """curl negotiates by ALPN; `want` is the HTTP version it must report ("1.1", "2")."""
        out = B.run_quiet(["curl", "-sS", "--max-time", "5", "--cacert", self.cert["cert"], flag,
                           "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                           f"https://127.0.0.1:{self.ports[name]}/"], timeout=10).strip()
        if out != f"200 {want}":
            raise RuntimeError(f"{name}: curl {flag} gave {out!r}, expected '200 {want}'")

    def sanity(self, name, sc):
        """Before every run: the proxy answers 200 over the protocol the run will use."""
        if sc["kind"] == "handshake":
            self.check_s_time_request(name)
        elif sc["kind"] == "wrk":
            self.check_curl(name, "--http1.1", "1.1")
        else:
            self.check_curl(name, "--http2", "2")


# --------------------------------------------------------------------------- measurements

def run_handshakes(bed, name, sc, duration, rundir, tag):
    """N `openssl s_time` processes in parallel, each one connection at a time: TCP connect,
    TLS handshake (-new: full; -reuse: resuming the previous connection's session), one GET
    with `Connection: close` (S_TIME_REQUEST), read until the proxy closes. Figures over the
    processes' whole run."""
    pid = bed.procs[name].pid
    cmd = ["openssl", "s_time", "-connect", f"127.0.0.1:{bed.ports[name]}", "-" + sc["mode"],
           "-time", str(duration), "-www", S_TIME_WWW, "-ciphersuites", TLS13_SUITE]
    # s_time stops at a whole second of time(2) (its -time T lasts T to T+1 s): start all the
    # clients just after a second boundary so that they all stop at the same moment.
    time.sleep((1.02 - time.time() % 1.0) % 1.0)
    outs = [os.path.join(rundir, f"{tag}.s_time{i + 1}.txt") for i in range(sc["clients"])]
    t0 = B.proc_cpu_ticks(pid)
    w0 = time.monotonic()
    procs = []
    try:
        for path in outs:
            with open(path, "w") as f:
                procs.append(subprocess.Popen(B.pin(cmd, B.LOAD_CPU), stdout=f,
                                              stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL))
        for p in procs:
            p.wait(duration + 60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    wall = time.monotonic() - w0
    alive = bed.alive(name)
    t1 = B.proc_cpu_ticks(pid) if alive else t0
    rss = B.proc_rss_kib(pid) if alive else 0
    total = resumed = bytes_read = 0
    for p, path in zip(procs, outs):
        out = open(path, errors="replace").read()
        m = re.search(r"^(\d+) connections in (\d+) real seconds, (\d+) bytes read per "
                      r"connection", out, re.M)
        if p.returncode != 0 or not m:
            last = " / ".join(out.strip().splitlines()[-3:])[-300:]
            return {"failed": f"openssl s_time exit {p.returncode}: {last}", "alive": alive}
        n = int(m.group(1))
        # one mark per timed connection: 'r' session reused, '*' full handshake
        marks = "".join(re.findall(r"^[r*]+$", out, re.M))
        total += n
        resumed += marks.count("r")
        bytes_read += n * int(m.group(3))
    if not total:
        return {"failed": "no connection completed", "alive": alive}
    per_conn = bytes_read / total
    if per_conn < len(B.BODY_12):
        return {"failed": f"only {per_conn:.0f} bytes read per connection: no HTTP response",
                "alive": alive}
    return {
        "requests": total,
        "hs_per_s": total / wall,
        "cpu_us_per_hs": (t1 - t0) / B.CLK_TCK * 1e6 / total,
        "cpu_util": (t1 - t0) / B.CLK_TCK / wall,
        "rss_mib": rss / 1024.0,
        "resumed_pct": 100.0 * resumed / total,
        "bytes_per_conn": per_conn,
        "wall_s": wall,
        "errors": 0,
        "alive": alive,
    }


def _duration_ms(value, unit):
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def run_h2load(bed, name, sc, duration, rundir, tag):
    """h2load over TLS with ALPN h2; every response must be 2xx; p50/p99 from --log-file."""
    pid = bed.procs[name].pid
    logf = os.path.join(bed.tmp, f"{tag}.h2load.log")  # per request; large, not kept
    cmd = ["h2load", "-t1", f"-c{sc['conns']}", f"-m{sc['streams']}", "-D", str(duration),
           "--tls13-ciphers", TLS13_SUITE, "--log-file", logf,
           f"https://127.0.0.1:{bed.ports[name]}{sc['path']}"]
    t0 = B.proc_cpu_ticks(pid)
    p = subprocess.run(B.pin(cmd, B.LOAD_CPU), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=duration + 60)
    alive = bed.alive(name)
    t1 = B.proc_cpu_ticks(pid) if alive else t0
    rss = B.proc_rss_kib(pid) if alive else 0
    out = p.stdout
    with open(os.path.join(rundir, f"{tag}.h2load.txt"), "w") as f:
        f.write(" ".join(cmd) + "\n" + out)
    fin = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    if not (fin and req and codes):
        return {"failed": f"h2load gave no summary (exit {p.returncode}): "
                          f"{' / '.join(out.strip().splitlines()[-3:])[-300:]}", "alive": alive}
    if not proto or proto.group(1) != "h2":
        return {"failed": f"h2load negotiated {proto.group(1) if proto else 'nothing'}, not h2",
                "alive": alive}
    ok = int(req.group(4))
    errors = int(req.group(5)) + int(req.group(6)) + int(req.group(7))
    non2xx = sum(int(x) for x in codes.groups()[1:])
    if non2xx or not ok:
        return {"failed": f"not all responses 2xx: {codes.group(0)}; {req.group(0)}",
                "alive": alive}
    lat = []
    try:
        with open(logf) as f:
            for line in f:
                cols = line.split("\t")
                if len(cols) >= 3 and cols[1].startswith("2"):
                    lat.append(int(cols[2]))
        os.remove(logf)
    except (OSError, ValueError):
        pass
    lat.sort()
    mean = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+"
                     r"([\d.]+)(us|ms|s)", out)
    tls = re.search(r"TLS Protocol: (\S+)\s+Cipher: (\S+)(?:\s+Server Temp Key: ([^\n]+))?", out)
    return {
        "requests": ok,
        "rps": float(fin.group(1)),
        "p50_ms": B.percentile(lat, 50) / 1000.0 if lat else None,
        "p99_ms": B.percentile(lat, 99) / 1000.0 if lat else None,
        "mean_ms": _duration_ms(mean.group(5), mean.group(6)) if mean else None,
        "cpu_us_per_req": (t1 - t0) / B.CLK_TCK * 1e6 / ok,
        "cpu_util": (t1 - t0) / B.CLK_TCK / duration,
        "rss_mib": rss / 1024.0,
        "errors": errors,
        "tls": " ".join(x for x in tls.groups() if x) if tls else None,
        "alive": alive,
    }


def measure(bed, name, sc, duration, rundir, tag):
    bed.sanity(name, sc)
    if sc["kind"] == "handshake":
        return run_handshakes(bed, name, sc, duration, rundir, tag)
    if sc["kind"] == "wrk":
        return B.run_wrk(bed, name, sc, duration, rundir, tag)
    return run_h2load(bed, name, sc, duration, rundir, tag)


def run_phase(a, rundir, scenarios, out):
    """Runs the selected TLS scenarios; results go into out["scenarios"] like scenarios 1-6."""
    cert = make_cert(os.path.join(a.data_dir, "tls"))
    bed = TlsBed(a.weir, rundir, cert)
    out["tls"] = {"cert": os.path.relpath(cert["cert"], B.ROOT), "cert_info": cert["info"],
                  "tls13_suite_offered": TLS13_SUITE, "negotiated": bed.negotiated}
    try:
        bed.start_origin()
        for name in B.SELECTED:
            try:
                bed.start_proxy(name)
                bed.check_balance(name)
            except (RuntimeError, OSError) as e:
                B.log(f"{name} with TLS: {str(e).splitlines()[0][:200]} "
                      f"(its TLS runs will be recorded as failed)")
        B.log(f"TLS: origin on :{bed.origin1} :{bed.origin2}; weir :{bed.port_weir}, haproxy "
              f":{bed.port_haproxy}, nginx :{bed.port_nginx} (https)")
        for name in B.SELECTED:  # warm-up, as for scenarios 1-6
            if bed.alive(name):
                subprocess.run(B.pin(["wrk", "-t1", "-c50", "-d1s",
                                      f"https://127.0.0.1:{bed.ports[name]}/"], B.LOAD_CPU),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        for sc in scenarios:
            runs = B.run_rounds(bed, sc, a.rounds, lambda bed_, name, sc_, tag: measure(
                bed_, name, sc_, a.duration, rundir, tag))
            out["scenarios"][sc["id"]] = {"title": sc["title"], "kind": sc["kind"],
                                          "spec": sc, "runs": runs}
    finally:
        bed.close()


# --------------------------------------------------------------------------- report

def _negotiated(scen):
    t = scen.get("tls") or {}
    parts = [f"{n} {v['version']} {v['cipher']}" for n, v in (t.get("negotiated") or {}).items()
             if v]
    return "; ".join(parts)


def table_notes(scen):
    """Lines under the main table about scenarios 8 and 9."""
    L = []
    s9 = scen["scenarios"].get("s9")
    if "s8" in scen["scenarios"] or s9:
        L.append(f"Scenarios 8 and 9 are scenario 1 over TLS (certificate ECDSA P-256; "
                 f"negotiated by the harness's HTTP/1.1 check: {_negotiated(scen) or 'n/a'}). "
                 f"Each connection's handshake happens once, at the start of the run.")
    if s9:
        agg = B.aggregate(s9)
        means = ", ".join(f"{n} {B.fmt(agg[n]['mean_ms'], 3)} ms" for n in B.PROXIES if n in agg)
        tls = sorted({r.get("tls") for runs in s9["runs"].values() for r in runs if r.get("tls")})
        L.append(f"Scenario 9: `h2load -c10 -m10`, ALPN h2 (checked, and every response must be "
                 f"2xx); p50/p99 from h2load's per-request log (request sent → response "
                 f"complete, up to 10 streams in flight per connection); h2load's mean: "
                 f"{means}. h2load negotiated: {'; '.join(tls) or 'n/a'}.")
    if L:
        L.append("")
    return L


def handshake_section(scen, notes):
    """The scenario 7 table; failures go into `notes` (the report's Failures list)."""
    ids = [sid for sid, sc in scen["scenarios"].items() if sc["kind"] == "handshake"]
    if not ids:
        return []
    L = ["## New TLS connections per second (scenario 7)", "",
         "| handshake | proxy | connections/s | ÷ HAProxy | CPU µs/connection | ÷ HAProxy | "
         "proxy CPU % | resumed % | RSS MiB | errors |",
         "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for sid in ids:
        sc = scen["scenarios"][sid]
        agg = B.aggregate(sc)
        base = agg.get(B.BASELINE, {})
        mode = "full" if sc["spec"]["mode"] == "new" else "resumed"
        for name in B.PROXIES:
            x = agg.get(name)
            if x is None:
                continue
            err = B.error_cell(x, sc, name, notes)
            util = x["cpu_util"] * 100 if x["cpu_util"] is not None else None
            L.append(f"| {mode} | {name} | {B.fmt(x['hs_per_s'], 0)} | "
                     f"{B.ratio(x['hs_per_s'], base.get('hs_per_s'))} | "
                     f"{B.fmt(x['cpu_us_per_hs'], 1)} | "
                     f"{B.ratio(x['cpu_us_per_hs'], base.get('cpu_us_per_hs'))} | "
                     f"{B.fmt(util, 0)} | {B.fmt(x['resumed_pct'], 1)} | "
                     f"{B.fmt(x['rss_mib'], 1)} | {err} |")
    clients = scen["scenarios"][ids[0]]["spec"]["clients"]
    L += ["",
          f"Each connection: TCP connect, TLS handshake, one `GET /` with `Connection: close` "
          f"(12-byte body from the origin through the proxy), the proxy closes. "
          f"{clients} `openssl s_time` "
          f"processes in parallel on the load CPU, each one connection at a time; *full*: "
          f"`-new`; *resumed*: `-reuse` (each connection resumes the session of the previous "
          f"one; *resumed %* is the share the proxy actually resumed, 100 % expected). TLS 1.3 "
          f"({TLS13_SUITE}, X25519), so a resumed handshake still does an X25519 exchange but "
          f"no certificate signature. The clients cost more CPU than the proxy (a full "
          f"handshake verifies two ECDSA signatures), so connections/s mostly measures the "
          f"load side: compare *CPU µs/connection* (proxy utime + stime ÷ connections, "
          f"handshake and request together).", ""]
    return L
