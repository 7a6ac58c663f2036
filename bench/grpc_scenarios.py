"""Scenarios 16-17 of the benchmark harness: gRPC and HTTP/2 (h2c) backends (see bench/README.md).

  16  gRPC unary calls over h2c: h2load as the gRPC client (POST /bench.Echo/Unary with a
      105-byte gRPC-framed body, `content-type: application/grpc`, `te: trailers`), 50
      connections x 20 streams, to weir (listener `h2c: true`, backend `protocol: h2c`), HAProxy
      (`bind ... proto h2`, `server ... proto h2`) and NGINX (`listen ... http2`, `grpc_pass`)
  17  HTTP/1.1 clients to the same h2c backend: wrk, keep-alive GETs of a 100-byte body, 50
      connections; NGINX through `grpc_pass` (its `proxy_pass` speaks HTTP/1.x only, and
      `grpc_pass` is its one HTTP/2 upstream: it does carry plain GETs)

The backend is `weir_h2_echo` (bench/h2_echo.cpp, nghttp2, one thread, built by CMake on demand)
listening on two ports: it echoes each gRPC message and ends with the trailer `grpc-status: 0`,
and answers a GET with a 100-byte body. They run on a bed of their own (configs and logs in
`logs-grpc/`): the proxies' configs of scenarios 1-6 with the listener and the servers turned to
HTTP/2 (derived by editing those files, so nothing else differs), one process per scenario and
proxy, only the scenario's up. Ratios are to NGINX and to HAProxy. Selected with
BENCH_SCENARIOS=grpc (or s16, s17).

Imported by bench.py (`import bench` below is bench.py itself, see the end of bench.py).
"""

import json
import os
import re
import shutil
import struct
import subprocess
import sys

import bench as B

GRPC_PATH = "/bench.Echo/Unary"
MESSAGE = bytes((i * 7 + 3) % 256 for i in range(100))  # the protobuf-like payload, 100 bytes
GRPC_BODY = b"\x00" + struct.pack(">I", len(MESSAGE)) + MESSAGE  # uncompressed flag + length
GET_BYTES = 100  # weir_h2_echo's default GET body
GET_BODY = bytes(b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36] for i in range(GET_BYTES - 1)) \
    + b"\n"
GRPC_HEADERS = ["content-type: application/grpc", "te: trailers"]
LABELS = {"weir": "weir", "haproxy": "HAProxy", "nginx": "NGINX", "weir-h1": "weir",
          "haproxy-h1": "HAProxy", "nginx-h1": "NGINX"}

GRPC_SCENARIOS = [
    {"id": "s16", "group": "grpc", "kind": "grpc-unary", "conns": 50, "streams": 20,
     "path": GRPC_PATH, "variants": ["weir", "haproxy", "nginx"],
     "title": "16. gRPC unary calls over h2c, 105 B each way, 50 conns x 20 streams"},
    {"id": "s17", "group": "grpc", "kind": "grpc-h1", "conns": 50, "path": "/",
     "variants": ["weir-h1", "haproxy-h1", "nginx-h1"],
     "title": "17. HTTP/1.1 clients to an h2c backend: keep-alive GET, 100 B, 50 conns"},
]

# a real gRPC client (Debian python3-grpcio), in a process of its own (gRPC's threads and the
# harness's fork/exec do not mix): unary calls with generic (identity) serializers
GRPCIO_CHECK = r"""
import json, sys
try:
    import grpc
except ImportError:
    print(json.dumps({"skipped": "python3-grpcio missing"})); sys.exit(0)
port, n, msg = int(sys.argv[1]), int(sys.argv[2]), bytes.fromhex(sys.argv[3])
ch = grpc.insecure_channel(f"127.0.0.1:{port}")
call = ch.unary_unary(sys.argv[4])
ok, bad = 0, []
for i in range(n):
    req = msg[:len(msg) - (i % 7)]
    try:
        resp, c = call.with_call(req, timeout=5)
        if c.code() == grpc.StatusCode.OK and resp == req:
            ok += 1
        else:
            bad.append(f"{c.code()} {len(resp)} bytes for {len(req)}")
    except grpc.RpcError as e:
        bad.append(f"{e.code()} {e.details()}")
ch.close()
print(json.dumps({"ok": ok, "n": n, "bad": bad[:3]}))
"""


# --------------------------------------------------------------------------- the backend

def echo_binary(weir_bin):
    """weir_h2_echo: WEIR_H2_ECHO_BIN, else built (CMake target, incremental) in the build dir
    of the weir binary or in build/release. Returns (path, None) or (None, why)."""
    env = os.environ.get("WEIR_H2_ECHO_BIN")
    if env:
        return (env, None) if os.access(env, os.X_OK) else (None, f"WEIR_H2_ECHO_BIN={env}: "
                                                                  f"not an executable")
    why = "no CMake build dir (build/release) to build weir_h2_echo in"
    for d in (os.path.dirname(os.path.abspath(weir_bin)), os.path.join(B.ROOT, "build/release")):
        if not os.path.exists(os.path.join(d, "CMakeCache.txt")):
            continue
        path = os.path.join(d, "weir_h2_echo")
        p = subprocess.run(["cmake", "--build", d, "--target", "weir_h2_echo"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=600)
        if p.returncode == 0 and os.access(path, os.X_OK):
            return path, None
        why = f"cmake --build {d} --target weir_h2_echo failed: {p.stdout.strip()[-300:]}"
        if os.access(path, os.X_OK):
            B.log(f"grpc: {why}; using the existing {path}")
            return path, None
    return None, why


def curl_grpc(port, timeout=10):
    """One gRPC unary call with curl over h2c: (http code, headers, trailers, body)."""
    cmd = ["curl", "-s", "--http2-prior-knowledge", "--max-time", str(timeout), "-X", "POST",
           "--data-binary", "@-", "-D", "-", "-o", "/dev/stderr"]
    for h in GRPC_HEADERS:
        cmd += ["-H", h]
    cmd.append(f"http://127.0.0.1:{port}{GRPC_PATH}")
    p = subprocess.run(cmd, input=GRPC_BODY, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout + 5)
    if p.returncode != 0:
        raise RuntimeError(f"curl (gRPC over h2c) to :{port} failed (exit {p.returncode})")
    # -D -: the response head, a blank line, then the trailers (curl writes them after the body)
    blocks = p.stdout.decode("latin-1").replace("\r\n", "\n").split("\n\n")
    head = blocks[0].split("\n")
    m = re.match(r"HTTP/2 (\d+)", head[0])

    def fields(lines):
        d = {}
        for ln in lines:
            k, sep, v = ln.partition(":")
            if sep:
                d[k.strip().lower()] = v.strip()
        return d

    trailers = fields("\n".join(blocks[1:]).split("\n"))
    return (int(m.group(1)) if m else None), fields(head[1:]), trailers, p.stderr


# --------------------------------------------------------------------------- the gRPC bed

class GrpcBed(B.Bed):
    """weir_h2_echo on the origin's two ports; per scenario and proxy one process whose config
    is the one of scenarios 1-6 with HTTP/2 towards the servers (and, in 16, h2c from the
    client)."""

    log_subdir = "logs-grpc"

    def __init__(self, weir_bin, data_dir, echo_bin):
        self.echo_bin = echo_bin
        self.instances = {}  # name -> (program, config path)
        try:
            super().__init__(weir_bin, data_dir)
        except Exception:
            if getattr(self, "tmp", None):
                shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def _write_configs(self):
        super()._write_configs()
        while True:
            extra = B.free_ports(3)
            if not set(extra) & (set(self.ports.values()) | {self.origin1, self.origin2}):
                break
        for name, port in zip(("weir-h1", "haproxy-h1", "nginx-h1"), extra):
            self.ports[name] = port
        t, o1, o2 = self.tmp, self.origin1, self.origin2
        streams = next(sc for sc in GRPC_SCENARIOS if sc["id"] == "s16")
        in_flight = streams["conns"] * streams["streams"]

        # weir: `protocol: h2c` on the backend (spec/upstream.md); 16: `h2c: true` on the listener
        to_h2c = ("    balance: round_robin\n", "    protocol: h2c\n    balance: round_robin\n")
        for name in ("weir", "weir-h1"):
            edits = [to_h2c, (f"listen: 127.0.0.1:{self.port_weir}\n",
                              f"listen: 127.0.0.1:{self.ports[name]}\n")]
            if name == "weir":
                edits.append(("    backend: origin\n", "    h2c: true\n    backend: origin\n"))
            self.instances[name] = ("weir", _edit(self.weir_conf,
                                                  os.path.join(t, f"{_file(name)}.yaml"), edits))

        # HAProxy: HTTP/2 to the servers; 16: the frontend speaks h2 only (prior knowledge)
        for name in ("haproxy", "haproxy-h1"):
            edits = [(f"server s1 127.0.0.1:{o1}\n", f"server s1 127.0.0.1:{o1} proto h2\n"),
                     (f"server s2 127.0.0.1:{o2}\n", f"server s2 127.0.0.1:{o2} proto h2\n"),
                     (f"  bind 127.0.0.1:{self.port_haproxy}\n",
                      f"  bind 127.0.0.1:{self.ports[name]}"
                      f"{' proto h2' if name == 'haproxy' else ''}\n")]
            self.instances[name] = ("haproxy", _edit(self.haproxy_conf,
                                                     os.path.join(t, f"{_file(name)}.cfg"), edits))

        # NGINX: grpc_pass, its one HTTP/2 upstream (one stream per upstream connection, so in
        # 16 the keep-alive cache must hold every call in flight or it would reconnect); 16:
        # `listen ... http2` (NGINX 1.22: h2c with prior knowledge only on that port)
        text = open(self.nginx_conf).read()
        m = re.search(r"      proxy_pass http://origin;\n.*?      proxy_max_temp_file_size 0;\n",
                      text, re.S)
        assert m, "nginx-proxy.conf: the proxy_pass block not found"
        grpc_loc = ("      grpc_pass grpc://origin;\n"
                    "      grpc_set_header X-Forwarded-For $remote_addr;\n"
                    "      grpc_set_header X-Forwarded-Proto $scheme;\n"
                    "      grpc_set_header X-Forwarded-Host $host;\n"
                    "      grpc_buffer_size 16k;\n")
        for name in ("nginx", "nginx-h1"):
            d = os.path.join(t, _file(name))
            for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
                os.makedirs(os.path.join(d, sub), exist_ok=True)
            keep = in_flight + 64 if name == "nginx" else 64
            edits = [(m.group(0), grpc_loc),
                     ("    keepalive 64;\n", f"    keepalive {keep};\n"),
                     (f"    listen 127.0.0.1:{self.port_nginx} backlog=4096;\n",
                      f"    listen 127.0.0.1:{self.ports[name]}"
                      f"{' http2' if name == 'nginx' else ''} backlog=4096;\n"),
                     (self.nginx_dir + "/", d + "/")]
            self.instances[name] = ("nginx", _edit(self.nginx_conf,
                                                   os.path.join(d, "nginx.conf"), edits))

    def proxy_cmd(self, name):
        prog, conf = self.instances[name]
        if prog == "weir":
            return [self.weir_bin, "run", "-c", conf]
        if prog == "haproxy":
            return ["haproxy", "-db", "-f", conf]
        d = os.path.dirname(conf)
        return ["nginx", "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")]

    def start_origin(self):
        cmd = B.pin([self.echo_bin, f"127.0.0.1:{self.origin1}", f"127.0.0.1:{self.origin2}"],
                    B.LOAD_CPU)
        self.origin_log = os.path.join(self.tmp, "h2_echo.log")
        out = open(self.origin_log, "w")
        self.origin = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        if not (B.wait_port(self.origin1, 10, self.origin) and B.wait_port(self.origin2, 10)):
            raise RuntimeError("weir_h2_echo did not start: " + self.tail(self.origin_log))
        for port in (self.origin1, self.origin2):
            st, h, tr, body = curl_grpc(port)
            if st != 200 or tr.get("grpc-status") != "0" or body != GRPC_BODY:
                raise RuntimeError(f"weir_h2_echo :{port}: gRPC call answered {st}, trailers "
                                   f"{tr}, {len(body)} bytes")

    def weir_refuses(self, name):
        """None if `weir check` accepts the instance's config; else (lacks_feature, message):
        lacks_feature when the errors name `protocol` or `h2c` (a weir without h2c backends)."""
        p = subprocess.run([self.weir_bin, "check", "-c", self.instances[name][1]],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=30)
        if p.returncode == 0:
            return None
        errors = [ln for ln in p.stdout.strip().splitlines() if ln.strip()] or ["(no output)"]
        msg = "; ".join(e.split(": ", 1)[-1] for e in errors)[:300]
        return ("protocol" in p.stdout or "h2c" in p.stdout), msg

    def check_balance(self, name):
        """Both servers must answer through the proxy, each answer complete: gRPC (16) with
        the message echoed and `grpc-status: 0` in the trailers; HTTP/1.1 GETs (17)."""
        seen = set()
        for _ in range(6):
            if name.endswith("-h1"):
                st, h, body = B.http_get(self.ports[name], "/")
                if st != 200 or body != GET_BODY:
                    raise RuntimeError(f"{name}: GET answered {st} {body[:80]!r}")
            else:
                st, h, tr, body = curl_grpc(self.ports[name])
                if (st != 200 or h.get("content-type") != "application/grpc"
                        or tr.get("grpc-status") != "0" or body != GRPC_BODY):
                    raise RuntimeError(f"{name}: gRPC call answered {st}, content-type "
                                       f"{h.get('content-type')}, trailers {tr}, {len(body)} "
                                       f"bytes (want 200, application/grpc, grpc-status 0, "
                                       f"the {len(GRPC_BODY)} bytes echoed)")
            seen.add(h.get("x-origin"))
        if len(seen) != 2:
            raise RuntimeError(f"{name}: expected both servers to be used, saw {seen}")

    def close(self):
        for name in list(self.procs):
            self.stop_proxy(name)
        if self.origin is not None and self.origin.poll() is None:
            self.origin.terminate()
            try:
                self.origin.wait(10)
            except subprocess.TimeoutExpired:
                self.origin.kill()
                self.origin.wait(5)
        try:
            logdir = os.path.join(self.data_dir, self.log_subdir)
            os.makedirs(logdir, exist_ok=True)
            for name, path in self.logs.items():
                if os.path.exists(path):
                    shutil.copy(path, os.path.join(logdir, f"{name}.log"))
            for name, (_, path) in self.instances.items():
                shutil.copy(path, os.path.join(logdir, f"{_file(name)}.conf" if path.endswith(
                    "nginx.conf") else os.path.basename(path)))
            if os.path.exists(getattr(self, "origin_log", "")):
                shutil.copy(self.origin_log, os.path.join(logdir, "h2_echo.log"))
        except OSError:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def _file(name):
    """The name of an instance's config (never that of the base config it is derived from)."""
    return name if name.endswith("-h1") else f"{name}-grpc"


def _edit(path, new_path, edits):
    text = open(path).read()
    for old, new in edits:
        assert old in text, f"{os.path.basename(path)}: {old!r} not found"
        text = text.replace(old, new)
    with open(new_path, "w") as f:
        f.write(text)
    return new_path


# --------------------------------------------------------------------------- measurements

def grpcio_check(port, n=20):
    """n unary calls with a real gRPC client: every one must end with status OK (grpc-status 0
    in the trailers) and the message echoed. Returns None if python3-grpcio is missing."""
    p = subprocess.run([sys.executable, "-c", GRPCIO_CHECK, str(port), str(n), MESSAGE.hex(),
                        GRPC_PATH], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=60)
    try:
        res = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"gRPC client check gave no result: {p.stderr.strip()[-300:]}")
    if res.get("skipped"):
        return None
    if res["ok"] != res["n"]:
        raise RuntimeError(f"gRPC client (grpcio): {res['n'] - res['ok']} of {res['n']} calls "
                           f"failed: {'; '.join(res['bad'])}")
    return res["ok"]


def run_h2load(bed, name, sc, duration, rundir, tag):
    """h2load as a gRPC client over h2c; every response must be 2xx and carry the echoed
    message (h2load's DATA bytes); p50/p99 from --log-file."""
    pid = bed.procs[name].pid
    logf = os.path.join(bed.tmp, f"{tag}.h2load.log")  # per request; large, not kept
    body = os.path.join(bed.tmp, "grpc-request.bin")
    if not os.path.exists(body):
        with open(body, "wb") as f:
            f.write(GRPC_BODY)
    cmd = ["h2load", "-t1", f"-c{sc['conns']}", f"-m{sc['streams']}", "-D", str(duration),
           "-d", body, "--log-file", logf]
    for h in GRPC_HEADERS:
        cmd += ["-H", h]
    cmd.append(f"http://127.0.0.1:{bed.ports[name]}{sc['path']}")
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
    traffic = re.search(r"traffic: .*?, .*?\((\d+)\) headers.*?, .*?\((\d+)\) data", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    if not (fin and req and codes and traffic):
        return {"failed": f"h2load gave no summary (exit {p.returncode}): "
                          f"{' / '.join(out.strip().splitlines()[-3:])[-300:]}", "alive": alive}
    if not proto or proto.group(1) != "h2c":
        return {"failed": f"h2load negotiated {proto.group(1) if proto else 'nothing'}, not h2c",
                "alive": alive}
    ok = int(req.group(4))
    started = int(req.group(2))
    errors = int(req.group(5)) + int(req.group(6)) + int(req.group(7))
    non2xx = sum(int(x) for x in codes.groups()[1:])
    # the status is counted when the response HEADERS arrive, a call when its trailers do: the
    # calls cut by the end of the run may add a few 2xx
    if non2xx or not ok or not ok <= int(codes.group(1)) <= started:
        return {"failed": f"not all responses 2xx: {codes.group(0)}; {req.group(0)}",
                "alive": alive}
    data = int(traffic.group(2))
    # every completed call echoed the whole message (DATA of calls cut by the end of the run
    # may add a little)
    if not ok * len(GRPC_BODY) <= data <= started * len(GRPC_BODY):
        return {"failed": f"{data} bytes of DATA for {ok} calls: not {len(GRPC_BODY)} bytes "
                          f"(the echoed message) each", "alive": alive}
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
    return {
        "requests": ok,
        "rps": float(fin.group(1)),
        "p50_ms": B.percentile(lat, 50) / 1000.0 if lat else None,
        "p99_ms": B.percentile(lat, 99) / 1000.0 if lat else None,
        "cpu_us_per_req": (t1 - t0) / B.CLK_TCK * 1e6 / ok,
        "cpu_util": (t1 - t0) / B.CLK_TCK / duration,
        "rss_mib": rss / 1024.0,
        "errors": errors,
        "header_bytes_per_resp": int(traffic.group(1)) / ok,
        "alive": alive,
    }


def measure(bed, name, sc, duration, rundir, tag):
    """Before every run the answers are checked (both servers used, each answer complete; in
    16 also 20 calls by a real gRPC client); then the load."""
    bed.check_balance(name)
    grpcio = grpcio_check(bed.ports[name]) if sc["kind"] == "grpc-unary" else None
    b0 = B.proc_cpu_ticks(bed.origin.pid)  # the backend's CPU: it must not be the limit
    if sc["kind"] == "grpc-unary":
        r = run_h2load(bed, name, sc, duration, rundir, tag)
        r["grpcio_checked"] = grpcio
    else:
        r = B.run_wrk(bed, name, sc, duration, rundir, tag)
        if r.get("requests") and r["bytes"] / r["requests"] < GET_BYTES:
            r["failed"] = (f"{r['bytes'] / r['requests']:.0f} bytes read per response, less "
                           f"than the {GET_BYTES}-byte body")
    if bed.origin.poll() is None:
        r["backend_cpu_util"] = (B.proc_cpu_ticks(bed.origin.pid) - b0) / B.CLK_TCK / duration
    elif not r.get("failed"):
        r["failed"] = f"weir_h2_echo died during the run (exit {bed.origin.returncode})"
    return r


def _warm_up(bed, name, sc):
    url = f"http://127.0.0.1:{bed.ports[name]}{sc['path']}"
    if sc["kind"] == "grpc-unary":
        cmd = ["h2load", "-t1", f"-c{sc['conns']}", f"-m{sc['streams']}", "-D", "1", "-d",
               os.path.join(bed.tmp, "grpc-request.bin")]
        for h in GRPC_HEADERS:
            cmd += ["-H", h]
        cmd.append(url)
    else:
        cmd = ["wrk", "-t1", f"-c{sc['conns']}", "-d1s", url]
    subprocess.run(B.pin(cmd, B.LOAD_CPU), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)


def run_phase(a, rundir, scenarios, out):
    """Runs the selected gRPC scenarios; results go into out["scenarios"] like the others'
    (with "unavailable": {name: reason} for a weir without h2c backends). A backend that cannot
    be built or started fails these scenarios' runs, not the whole benchmark."""
    entries = {}
    for sc in scenarios:
        entries[sc["id"]] = {"title": sc["title"], "kind": sc["kind"], "spec": sc, "runs": {},
                             "unavailable": {}}
        out["scenarios"][sc["id"]] = entries[sc["id"]]

    def fail_all(why):
        B.log(f"grpc: FAILED: {why}")
        for sc in scenarios:
            for name in sc["variants"]:
                if name.split("-")[0] in B.SELECTED:
                    entries[sc["id"]]["runs"][name] = [{"failed": why, "alive": False}]

    echo, why = echo_binary(a.weir)
    if not echo:
        return fail_all(why)
    try:
        bed = GrpcBed(a.weir, rundir, echo)
    except (AssertionError, OSError) as e:  # a base config these edits no longer match
        return fail_all(f"configs: {e}")
    out["grpc"] = {"backend": os.path.relpath(echo, B.ROOT) if echo.startswith(B.ROOT) else echo,
                   "request_bytes": len(GRPC_BODY), "get_bytes": GET_BYTES}
    try:
        try:
            bed.start_origin()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            return fail_all(str(e).splitlines()[0][:300])
        with open(os.path.join(bed.tmp, "grpc-request.bin"), "wb") as f:
            f.write(GRPC_BODY)
        B.log(f"grpc: weir_h2_echo on :{bed.origin1} :{bed.origin2}; "
              + ", ".join(f"{n} :{p}" for n, p in bed.ports.items() if n in bed.instances))
        for sc in scenarios:
            entry = entries[sc["id"]]
            variants = []
            for name in sc["variants"]:
                if name.split("-")[0] not in B.SELECTED:
                    continue
                if bed.instances[name][0] == "weir":
                    refused = bed.weir_refuses(name)
                    if refused and refused[0]:
                        entry["unavailable"][name] = refused[1]
                        B.log(f"{sc['id']} {name}: not available in this weir ({refused[1]})")
                        continue
                    if refused:
                        entry["runs"][name] = [{"failed": f"weir check: {refused[1]}",
                                                "alive": False}]
                        B.log(f"{sc['id']} {name}: FAILED: weir check: {refused[1]}")
                        continue
                variants.append(name)
            for name in list(bed.procs):  # only this scenario's proxies up, fresh ones
                bed.stop_proxy(name)
            for name in variants:
                try:
                    bed.start_proxy(name)
                    bed.check_balance(name)
                    _warm_up(bed, name, sc)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                    # run_rounds restarts it before each run and records the runs as failed
                    B.log(f"{sc['id']} {name}: {str(e).splitlines()[0][:200]}")
            if variants:
                entry["runs"].update(B.run_rounds(
                    bed, sc, a.rounds,
                    lambda bed_, name, sc_, tag: measure(bed_, name, sc_, a.duration, rundir,
                                                         tag),
                    proxies=variants))
            for line in ratio_lines(entry):
                B.log(f"{sc['id']}: {line}")
        for name in list(bed.procs):
            bed.stop_proxy(name)
    finally:
        bed.close()


# --------------------------------------------------------------------------- report

def _by_proxy(sc):
    """The medians per proxy (weir, haproxy, nginx), whatever the instance names."""
    agg = B.aggregate(sc)
    for name, runs in sc["runs"].items():
        agg[name]["backend_cpu_util"] = B.med([r.get("backend_cpu_util") for r in runs
                                               if not r.get("failed")])
    return {name.split("-")[0]: x for name, x in agg.items()}


def ratio_lines(sc):
    """weir ÷ NGINX and weir ÷ HAProxy, throughput and CPU per call (the headline figures)."""
    agg = _by_proxy(sc)
    w = agg.get("weir")
    if not w or w["rps"] is None:
        return []
    unit = "calls" if sc["kind"] == "grpc-unary" else "req"
    out = []
    for base in ("nginx", "haproxy"):
        b = agg.get(base)
        if b and b["rps"]:
            out.append(f"weir ÷ {LABELS[base]}: {unit}/s {B.ratio(w['rps'], b['rps'])}, "
                       f"CPU µs/{unit[:-1] if unit == 'calls' else unit} "
                       f"{B.ratio(w['cpu_us_per_req'], b['cpu_us_per_req'])}")
    return out


def _pct(x):
    return B.fmt(x * 100 if x is not None else None, 0)


def report_section(scen, notes):
    """Scenarios 16-17's tables; failures go into `notes` (the report's Failures list)."""
    ids = [sid for sid in ("s16", "s17") if sid in scen["scenarios"]]
    if not ids:
        return []
    L = ["## gRPC and HTTP/2 backends (scenarios 16, 17)", ""]
    missing = []
    for sid in ids:
        sc = scen["scenarios"][sid]
        agg = _by_proxy(sc)
        grpc = sc["kind"] == "grpc-unary"
        unit, per = ("calls/s", "call") if grpc else ("req/s", "req")
        L += [f"### {sc['title']}", "",
              f"| proxy | {unit} | ÷ NGINX | ÷ HAProxy | p50 ms | p99 ms | CPU µs/{per} | "
              f"÷ NGINX | ÷ HAProxy | proxy CPU % | backend CPU % | RSS MiB | errors |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
              "| --- |"]
        nb, hb = agg.get("nginx", {}), agg.get("haproxy", {})
        for name in sc["spec"]["variants"]:
            label = LABELS[name]
            if name in sc.get("unavailable", {}):
                L.append(f"| {label} | *not available* |" + " |" * 11)
                missing.append(f"- {sc['title']} / {label}: not available: "
                               f"{sc['unavailable'][name]}")
                continue
            x = agg.get(name.split("-")[0])
            if x is None:
                continue
            L.append(f"| {label} | {B.fmt(x['rps'], 0)} | {B.ratio(x['rps'], nb.get('rps'))} | "
                     f"{B.ratio(x['rps'], hb.get('rps'))} | {B.fmt(x['p50_ms'], 3)} | "
                     f"{B.fmt(x['p99_ms'], 3)} | {B.fmt(x['cpu_us_per_req'], 1)} | "
                     f"{B.ratio(x['cpu_us_per_req'], nb.get('cpu_us_per_req'))} | "
                     f"{B.ratio(x['cpu_us_per_req'], hb.get('cpu_us_per_req'))} | "
                     f"{_pct(x['cpu_util'])} | {_pct(x['backend_cpu_util'])} | "
                     f"{B.fmt(x['rss_mib'], 1)} | {B.error_cell(x, sc, label, notes)} |")
        L.append("")
        head = ratio_lines(sc)
        if head:
            L += [f"**{'; '.join(head)}.**", ""]
        if grpc:
            unchecked = any(r.get("grpcio_checked") is None for runs in sc["runs"].values()
                            for r in runs if not r.get("failed"))
            by = (" (python3-grpcio missing: no check by a real gRPC client)" if unchecked else
                  ", and 20 calls by a real gRPC client (python3-grpcio, generic unary call) "
                  "must each end with status OK and their message echoed")
            L += [f"`h2load -t1 -c{sc['spec']['conns']} -m{sc['spec']['streams']}` over h2c "
                  f"(prior knowledge) as the gRPC client: `POST {GRPC_PATH}` with a "
                  f"{len(GRPC_BODY)}-byte body (5-byte gRPC prefix + {len(MESSAGE)}-byte "
                  f"message) and `content-type: application/grpc`, `te: trailers`; the backend "
                  f"(`weir_h2_echo`, nghttp2, two ports) echoes the message and ends each call "
                  f"with the trailer `grpc-status: 0`. A run fails unless every response is 2xx "
                  f"and h2load received {len(GRPC_BODY)} bytes of DATA per call (the echo); "
                  f"before every run, through the proxy, 6 calls by curl must show the echoed "
                  f"body and the `grpc-status: 0` trailer from both servers{by}. weir: "
                  f"listener `h2c: true`, backend `protocol: h2c`; HAProxy: `bind ... proto h2`, "
                  f"`server ... proto h2`, `http-reuse always`; NGINX: `listen ... http2`, "
                  f"`grpc_pass`, `keepalive {sc['spec']['conns'] * sc['spec']['streams'] + 64}` "
                  f"(NGINX carries one call per upstream connection, so up to "
                  f"{sc['spec']['conns'] * sc['spec']['streams']:,} connections to the servers "
                  f"where weir and HAProxy multiplex streams over a few).", ""]
        else:
            L += [f"`wrk -t1 -c{sc['spec']['conns']}` keep-alive `GET /` (HTTP/1.1) through each "
                  f"proxy to the same h2c backend, which answers {GET_BYTES} bytes with "
                  f"`content-length`. NGINX's `proxy_pass` speaks HTTP/1.x only; its one HTTP/2 "
                  f"upstream is `grpc_pass`, and it carries these plain GETs (checked before "
                  f"every run, as for every proxy: both servers, the whole body), so NGINX is "
                  f"measured through `grpc_pass` here. weir: the plain listener, backend "
                  f"`protocol: h2c`; HAProxy: `server ... proto h2`.", ""]
    L += ["How to read them: *CPU µs/call* (*/req*), the proxy's utime + stime ÷ calls, is its "
          "own cost and the figure to compare; calls/s also depends on the load core, which "
          "h2load (wrk) shares with the backend. *backend CPU %*: `weir_h2_echo`'s share of that "
          "core, well below 100 % when the backend was not the limit. The gRPC ratio is weir ÷ "
          "NGINX (`grpc_pass`) in scenario 16.", ""]
    if missing:
        L += ["Not measured:", ""] + missing + [""]
    return L
