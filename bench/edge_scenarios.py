"""Scenarios 12-15 of the benchmark harness: compression and static files (see bench/README.md).

  12  a 100 KiB JSON response compressed by the proxy, gzip level 5: weir, HAProxy, NGINX
  13  the same JSON through weir with gzip 5, br 4, zstd 3 in turn (and uncompressed), with
      NGINX gzip 5 as the reference: bytes saved and CPU per algorithm
  14  a 20 MiB static file served by weir (`static:` route) and by NGINX (no proxy, no origin)
  15  the same with a 2 KiB file

They run last, on a bed of their own: an origin that serves the JSON uncompressed (NGINX,
`gzip off`), the proxies' configs of scenarios 1-6 with compression added (derived by editing
those files, so nothing else differs), and two file servers. HAProxy cannot serve files, so it
is not in 14 and 15. Figures are compared to NGINX, which has all four. A weir that refuses a
config because it lacks the feature (`weir check` names `compression` or `static`) is reported
"not available" for that scenario instead of failing the whole run.

Imported by bench.py (`import bench` below is bench.py itself, see the end of bench.py).
"""

import json
import os
import random
import shutil
import socket
import subprocess
import zlib

import bench as B

try:
    import brotli  # Debian python3-brotli (scripts/deps.sh): checks br responses
except ImportError:
    brotli = None

JSON_PATH = "/data.json"
JSON_TARGET = 100 << 10  # ~100 KiB: objects are added until the array reaches it
STATIC = {"s14": ("/20m.bin", 20 << 20), "s15": ("/2k.bin", 2 << 10)}
# a compressed run whose responses average more than this share of the JSON (headers included)
# was not compressed under load: failed, whatever the check before it said
UNCOMPRESSED_SHARE = 0.9
LABELS = {"weir": "weir", "haproxy": "HAProxy", "nginx": "NGINX", "weir-identity":
          "weir, no compression", "weir-br": "weir", "weir-zstd": "weir",
          "weir-static": "weir", "nginx-static": "NGINX"}


def _v(name, encoding=None, level=None):
    return {"name": name, "encoding": encoding, "level": level}


EDGE_SCENARIOS = [
    {"id": "s12", "group": "edge", "kind": "edge-compress", "conns": 50, "path": JSON_PATH,
     "title": "12. compression: 100 KiB JSON, gzip level 5, 50 conns",
     "variants": [_v("weir", "gzip", 5), _v("haproxy", "gzip", 5), _v("nginx", "gzip", 5)]},
    # weir-identity: the same weir without compression, so that the compression's own CPU is
    # the difference to it
    {"id": "s13", "group": "edge", "kind": "edge-algos", "conns": 50, "path": JSON_PATH,
     "title": "13. compression: bytes saved and CPU per algorithm (weir), 50 conns",
     "variants": [_v("weir-identity"), _v("weir", "gzip", 5), _v("weir-br", "br", 4),
                  _v("weir-zstd", "zstd", 3), _v("nginx", "gzip", 5)]},
    {"id": "s14", "group": "edge", "kind": "edge-static", "conns": 10, "path": STATIC["s14"][0],
     "size": STATIC["s14"][1], "title": "14. static: 20 MiB file, 10 conns",
     "variants": [_v("weir-static"), _v("nginx-static")]},
    {"id": "s15", "group": "edge", "kind": "edge-static", "conns": 50, "path": STATIC["s15"][0],
     "size": STATIC["s15"][1], "title": "15. static: 2 KiB file, 50 conns",
     "variants": [_v("weir-static"), _v("nginx-static")]},
]


# --------------------------------------------------------------------------- the payloads

def make_json():
    """A deterministic JSON array of user-like records (json-generator.com style: ids, names,
    e-mails, dates, coordinates, free text, tags), compact, ~100 KiB: realistic API output,
    neither random bytes nor one repeated object, so compressors meet their usual ratio."""
    rng = random.Random(20261130)
    first = ("Ada Alan Barbara Claude Donald Edsger Frances Grace Guido Hedy John Ken Leslie "
             "Linus Margaret Niklaus Radia Robin Shafi Sophie Tim Tony Whitfield Yukihiro").split()
    last = ("Lovelace Turing Liskov Shannon Knuth Dijkstra Allen Hopper Rossum Lamarr Backus "
            "Thompson Lamport Torvalds Hamilton Wirth Perlman Milner Goldwasser Wilson Berners "
            "Hoare Diffie Matsumoto").split()
    words = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
             "incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud "
             "exercitation ullamco laboris nisi aliquip ex ea commodo consequat").split()
    cities = ("Lisbon Oslo Kyoto Austin Lagos Quito Perth Tallinn Montreal Seville Dakar "
              "Hanoi").split()
    streets = "Maple Oak Cedar Elm Pine Birch Willow Harbor Mill Station".split()
    items, size = [], 2
    while size < JSON_TARGET:
        i = len(items)
        fn, ln = rng.choice(first), rng.choice(last)
        company = rng.choice(words).upper() + rng.choice(words).upper()
        item = {
            "id": 100000 + i,
            "guid": "%08x-%04x-4%03x-%04x-%012x" % tuple(rng.getrandbits(b) for b in
                                                         (32, 16, 12, 16, 48)),
            "isActive": rng.random() < 0.7,
            "balance": "$%s" % format(round(rng.uniform(1000, 4000), 2), ",.2f"),
            "age": rng.randint(20, 70),
            "name": f"{fn} {ln}",
            "company": company,
            "email": f"{fn.lower()}.{ln.lower()}@{company.lower()}.example",
            "phone": "+1 (%03d) %03d-%04d" % (rng.randint(200, 999), rng.randint(200, 999),
                                               rng.randint(0, 9999)),
            "address": "%d %s Street, %s, %05d" % (rng.randint(1, 999), rng.choice(streets),
                                                    rng.choice(cities), rng.randint(1000, 99999)),
            "about": " ".join(rng.choice(words) for _ in range(rng.randint(12, 30))) + ".",
            "registered": "20%02d-%02d-%02dT%02d:%02d:%02dZ" % (
                rng.randint(14, 25), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                rng.randint(0, 59), rng.randint(0, 59)),
            "latitude": round(rng.uniform(-90, 90), 6),
            "longitude": round(rng.uniform(-180, 180), 6),
            "tags": rng.sample(words, 4),
            "friends": [{"id": k, "name": f"{rng.choice(first)} {rng.choice(last)}"}
                        for k in range(3)],
        }
        items.append(item)
        size += len(json.dumps(item, separators=(",", ":"))) + 1
    return json.dumps(items, separators=(",", ":")).encode()


def decode(encoding, body):
    """The body decompressed by an independent implementation (zlib, python3-brotli, the zstd
    CLI); raises RuntimeError if it does not decode completely."""
    if encoding is None:
        return body
    if encoding == "gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip wrapper only
        try:
            out = d.decompress(body) + d.flush()
        except zlib.error as e:
            raise RuntimeError(f"gzip body does not decompress: {e}")
        if not d.eof or d.unused_data:
            raise RuntimeError("gzip body truncated or followed by extra bytes")
        return out
    if encoding == "br":
        try:
            return brotli.decompress(body)
        except brotli.error as e:
            raise RuntimeError(f"br body does not decompress: {e}")
    if encoding == "zstd":
        p = subprocess.run(["zstd", "-d", "-c", "-q"], input=body, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        if p.returncode != 0:
            raise RuntimeError(f"zstd body does not decompress: "
                               f"{p.stderr.decode(errors='replace').strip()[:200]}")
        return p.stdout
    raise ValueError(encoding)


def dechunk(raw):
    out, i = [], 0
    while True:
        j = raw.find(b"\r\n", i)
        if j < 0:
            raise RuntimeError("chunked body cut short")
        size = int(raw[i:j].split(b";")[0], 16)
        i = j + 2
        if size == 0:
            return b"".join(out)
        if raw[i + size:i + size + 2] != b"\r\n":
            raise RuntimeError("malformed chunk")
        out.append(raw[i:i + size])
        i += size + 2


def fetch(port, path, accept_encoding=None, timeout=10.0):
    """One HTTP/1.1 GET (Connection: close); (status, headers, body as sent, i.e. still encoded
    but without chunk framing, body bytes on the wire including the framing)."""
    req = f"GET {path} HTTP/1.1\r\nHost: bench.local\r\n"
    if accept_encoding:
        req += f"Accept-Encoding: {accept_encoding}\r\n"
    req += "Connection: close\r\n\r\n"
    parts = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(req.encode())
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            parts.append(chunk)
    head, sep, raw = b"".join(parts).partition(b"\r\n\r\n")
    if not sep:
        raise RuntimeError(f"no complete response head: {head[:80]!r}")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = dechunk(raw)
    elif "content-length" in headers:
        n = int(headers["content-length"])
        if len(raw) < n:
            raise RuntimeError(f"body cut short: {len(raw)} of {n} bytes")
        body = raw = raw[:n]
    else:
        body = raw  # delimited by the close
    return int(lines[0].split()[1]), headers, body, len(raw)


# --------------------------------------------------------------------------- the edge bed

class EdgeBed(B.Bed):
    """The origin of scenarios 1-6 plus /data.json (uncompressed); the three proxies' configs
    of 1-6 with compression added; weir with one algorithm each (scenario 13); and two file
    servers over one directory (scenarios 14, 15). Every process is one named instance with a
    port of its own; only those of the running scenario are up."""

    log_subdir = "logs-edge"

    def __init__(self, weir_bin, data_dir, json_body):
        self.json_body = json_body
        self.instances = {}  # name -> (program, config path)
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
        t = self.tmp
        with open(os.path.join(t, "www", JSON_PATH[1:]), "wb") as f:
            f.write(self.json_body)
        self.static_root = os.path.join(t, "static")
        os.makedirs(self.static_root)
        for path, size in STATIC.values():
            # deterministic, incompressible-looking content (a file server does not care)
            rng = random.Random(size)
            with open(os.path.join(self.static_root, path[1:]), "wb") as f:
                f.write(rng.randbytes(size))
        super()._write_configs()
        while True:
            extra = B.free_ports(5)
            if not set(extra) & (set(self.ports.values()) | {self.origin1, self.origin2}):
                break
        for name, port in zip(("weir-identity", "weir-br", "weir-zstd", "weir-static",
                               "nginx-static"), extra):
            self.ports[name] = port

        # origin: the JSON as a file, never compressed by the origin (gzip is off by default in
        # NGINX; said again here), so every proxy gets the same identity body to compress
        self.origin_conf = self._edit(self.origin_conf, self.origin_conf, [
            ("    location / {",
             f"    location = {JSON_PATH} {{ root {t}/www; gzip off; types {{ }} "
             f"default_type application/json; }}\n    location / {{")])

        # weir: the listener of scenarios 1-6 with compression (spec/edge.md); scenario 13's
        # weirs differ only by their port and algorithm
        base = self.weir_conf

        def weir_conf(name, compression):
            port = self.ports[name]
            edits = [(f"listen: 127.0.0.1:{self.port_weir}\n", f"listen: 127.0.0.1:{port}\n")]
            if compression:
                edits.append(("    max_connections: 11000\n",
                              f"    max_connections: 11000\n    compression: {compression}\n"))
            # not weir.yaml: that is `base`, the others are made from it
            fname = "weir-gzip.yaml" if name == "weir" else f"{name}.yaml"
            path = self._edit(base, os.path.join(t, fname), edits)
            self.instances[name] = ("weir", path)
            return path

        for name, alg, level in (("weir", "gzip", 5), ("weir-br", "br", 4),
                                 ("weir-zstd", "zstd", 3)):
            weir_conf(name, f"{{ algorithms: [{alg}], levels: {{ {alg}: {level} }}, "
                            f"types: [application/json] }}")
        weir_conf("weir-identity", None)
        self.weir_conf = self.instances["weir"][1]

        # HAProxy 2.6: the compression filter; its level is global (tune.comp.maxlevel) and
        # does not apply with libslz (Debian's build, see `haproxy -vv`; noted in the report)
        self.haproxy_conf = self._edit(
            self.haproxy_conf, os.path.join(t, "haproxy-gzip.cfg"), [
                ("  nbthread 1\n", "  nbthread 1\n  tune.comp.maxlevel 5\n"),
                ("  default_backend origin\n",
                 "  filter compression\n  compression algo gzip\n"
                 "  compression type application/json\n  default_backend origin\n")])
        self.instances["haproxy"] = ("haproxy", self.haproxy_conf)

        # NGINX: gzip 5 on the proxy; Accept-Encoding not forwarded (the origin would not
        # compress anyway: this makes NGINX's config correct on its own); gzip_vary as weir and
        # HAProxy add Vary, so the response heads are alike
        self.nginx_conf = self._edit(
            self.nginx_conf, os.path.join(self.nginx_dir, "nginx-gzip.conf"), [
                ("    location / {\n      proxy_pass http://origin;\n",
                 "    gzip on;\n    gzip_comp_level 5;\n    gzip_types application/json;\n"
                 "    gzip_proxied any;\n    gzip_min_length 1024;\n    gzip_vary on;\n"
                 "    location / {\n      proxy_pass http://origin;\n"
                 "      proxy_set_header Accept-Encoding \"\";\n")])
        self.instances["nginx"] = ("nginx", self.nginx_conf)

        # file servers, same directory, no origin involved
        self.weir_static_conf = os.path.join(t, "weir-static.yaml")
        with open(self.weir_static_conf, "w") as f:
            f.write(f"""workers: 1
limits:
  drain_timeout: 1s
listeners:
  - name: static
    listen: 127.0.0.1:{self.ports['weir-static']}
    max_connections: 11000
    routes:
      - match: {{ path_prefix: / }}
        static: {{ root: {self.static_root} }}
""")
        self.instances["weir-static"] = ("weir", self.weir_static_conf)
        d, common = self._nginx_common("nginx-static")
        self.nginx_static_conf = os.path.join(d, "nginx.conf")
        with open(self.nginx_static_conf, "w") as f:
            f.write(common + f"""  sendfile on;
  tcp_nopush on;
  server {{
    listen 127.0.0.1:{self.ports['nginx-static']} backlog=4096;
    root {self.static_root};
    default_type application/octet-stream;
    location / {{ }}
  }}
}}
""")
        self.instances["nginx-static"] = ("nginx", self.nginx_static_conf)

    def proxy_cmd(self, name):
        prog, conf = self.instances[name]
        if prog == "weir":
            return [self.weir_bin, "run", "-c", conf]
        if prog == "haproxy":
            return ["haproxy", "-db", "-f", conf]
        d = os.path.dirname(conf)
        return ["nginx", "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")]

    def weir_refuses(self, name, feature):
        """None if `weir check` accepts the instance's config; else (lacks_feature, message):
        lacks_feature when the errors name `feature` (this weir does not have it yet)."""
        p = subprocess.run([self.weir_bin, "check", "-c", self.instances[name][1]],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=30)
        if p.returncode == 0:
            return None
        out = p.stdout
        errors = [ln for ln in out.strip().splitlines() if ln.strip()] or ["(no output)"]
        msg = "; ".join(e.split(": ", 1)[-1] for e in errors)[:300]
        return feature in out, msg

    def close(self):
        # the other configs next to those Bed.close keeps (weir.yaml is scenario 12's)
        try:
            logdir = os.path.join(self.data_dir, self.log_subdir)
            os.makedirs(logdir, exist_ok=True)
            for name, (_, path) in self.instances.items():
                if name not in ("haproxy", "nginx"):
                    shutil.copy(path, os.path.join(logdir, os.path.basename(path)
                                                   if name != "nginx-static"
                                                   else "nginx-static.conf"))
        except OSError:
            pass
        super().close()


# --------------------------------------------------------------------------- measurements

def check(bed, name, sc, v):
    """Before every run: one GET as wrk will send it; the body must decode (independently) to
    exactly the original, with the expected Content-Encoding. Returns the sizes."""
    if sc["kind"] == "edge-static":
        st, h, body, _ = fetch(bed.ports[name], sc["path"], timeout=30)
        want = open(os.path.join(bed.static_root, sc["path"][1:]), "rb").read()
        if st != 200 or body != want:
            raise RuntimeError(f"{name}: {sc['path']} answered {st} with {len(body)} bytes, "
                               f"not the file's {len(want)}")
        return {}
    enc = v["encoding"]
    st, h, body, wire = fetch(bed.ports[name], sc["path"], enc)
    got = h.get("content-encoding")
    if st != 200 or got != enc:
        raise RuntimeError(f"{name}: Accept-Encoding {enc or '(none)'} answered {st} with "
                           f"Content-Encoding {got or '(none)'}, {len(body)} bytes")
    try:
        plain = decode(enc, body)
        if plain != bed.json_body:
            raise RuntimeError(f"decodes to {len(plain)} bytes that differ from the "
                               f"{len(bed.json_body)}-byte original")
    except RuntimeError as e:
        B.log(f"ERROR: {name}: {enc} response does NOT round-trip: {e}")
        raise RuntimeError(f"{name}: {enc} response does not round-trip: {e}")
    return {"body_bytes": len(body), "wire_body_bytes": wire}


def measure(bed, name, sc, duration, rundir, tag):
    v = next(x for x in sc["variants"] if x["name"] == name)
    sizes = check(bed, name, sc, v)
    spec = dict(sc, headers=[f"Accept-Encoding: {v['encoding']}"] if v["encoding"] else [])
    r = B.run_wrk(bed, name, spec, duration, rundir, tag)
    if r.get("failed") or not r.get("requests"):
        return r
    r.update(sizes)
    r["bytes_per_resp"] = r["bytes"] / r["requests"]
    if sc["kind"] == "edge-static":
        r["cpu_us_per_mib"] = (r["cpu_us_per_req"] / (sc["size"] / (1 << 20))
                               if r["cpu_us_per_req"] is not None else None)
        if r["bytes_per_resp"] < sc["size"]:
            r["failed"] = (f"{r['bytes_per_resp']:.0f} bytes read per response, less than the "
                           f"{sc['size']}-byte file")
    elif v["encoding"] and r["bytes_per_resp"] > UNCOMPRESSED_SHARE * len(bed.json_body):
        r["failed"] = (f"responses not compressed under load: {r['bytes_per_resp']:.0f} bytes "
                       f"per response for a {len(bed.json_body)}-byte JSON")
    return r


def run_phase(a, rundir, scenarios, out):
    """Runs the selected edge scenarios; results go into out["scenarios"] like the others',
    with "unavailable": {name: reason} for a weir that lacks the feature."""
    body = make_json()
    hv = B.run_quiet(["haproxy", "-vv"])
    out["edge"] = {
        "json_bytes": len(body),
        "haproxy_slz": "Built with libslz" in hv,
        "haproxy_zlib": "Built with zlib" in hv,
        "brotli_module": brotli is not None,
    }
    bed = EdgeBed(a.weir, rundir, body)
    try:
        bed.start_origin()
        st, h, got, _ = fetch(bed.origin1, JSON_PATH, "gzip")
        if st != 200 or got != body or h.get("content-encoding"):
            raise RuntimeError(f"origin: {JSON_PATH} answered {st}, {len(got)} bytes, "
                               f"Content-Encoding {h.get('content-encoding')}")
        B.log(f"edge: origin on :{bed.origin1} :{bed.origin2}, {JSON_PATH} {len(body):,} bytes; "
              + ", ".join(f"{n} :{p}" for n, p in bed.ports.items()
                          if n in bed.instances))
        for sc in scenarios:
            entry = {"title": sc["title"], "kind": sc["kind"], "spec": sc, "runs": {},
                     "unavailable": {}, "skipped": {}}
            out["scenarios"][sc["id"]] = entry
            variants = []
            for v in sc["variants"]:
                name = v["name"]
                if name.split("-")[0] not in B.SELECTED:
                    continue
                if v["encoding"] == "br" and brotli is None:
                    entry["skipped"][name] = "python3-brotli missing: br responses cannot be " \
                                             "checked"
                    continue
                if bed.instances[name][0] == "weir":
                    feature = "static" if sc["kind"] == "edge-static" else "compression"
                    refused = bed.weir_refuses(name, feature)
                    if refused and refused[0]:
                        entry["unavailable"][name] = refused[1]
                        B.log(f"{sc['id']} {name}: not available in this weir ({refused[1]})")
                        continue
                    if refused:  # refused for another reason: a broken config, a failure
                        entry["runs"][name] = [{"failed": f"weir check: {refused[1]}",
                                                "alive": False}]
                        B.log(f"{sc['id']} {name}: FAILED: weir check: {refused[1]}")
                        continue
                variants.append(name)
            # only this scenario's processes up; fresh ones for every scenario
            for name in list(bed.procs):
                bed.stop_proxy(name)
            for name in variants:
                try:
                    bed.start_proxy(name)
                    if sc["kind"] != "edge-static":
                        bed.check_balance(name)
                    enc = next(x["encoding"] for x in sc["variants"] if x["name"] == name)
                    warm = ["wrk", "-t1", f"-c{sc['conns']}", "-d1s"]
                    if enc:
                        warm += ["-H", f"Accept-Encoding: {enc}"]
                    subprocess.run(B.pin(warm + [f"http://127.0.0.1:{bed.ports[name]}"
                                                 f"{sc['path']}"], B.LOAD_CPU),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   timeout=60)
                except (RuntimeError, OSError) as e:
                    # run_rounds restarts it before each run and records the runs as failed
                    B.log(f"{sc['id']} {name}: {str(e).splitlines()[0][:200]}")
            if variants:
                entry["runs"].update(B.run_rounds(
                    bed, sc, a.rounds,
                    lambda bed_, name, sc_, tag: measure(bed_, name, sc_, a.duration, rundir,
                                                         tag),
                    proxies=variants))
        for name in list(bed.procs):
            bed.stop_proxy(name)
    finally:
        bed.close()


# --------------------------------------------------------------------------- report

def _agg(sc):
    agg = B.aggregate(sc)
    for name, runs in sc["runs"].items():
        good = [r for r in runs if not r.get("failed")]
        for key in ("body_bytes", "wire_body_bytes", "bytes_per_resp", "cpu_us_per_mib"):
            agg[name][key] = B.med([r.get(key) for r in good])
    return agg


def _pct(x):
    return B.fmt(x * 100 if x is not None else None, 0)


def _level(v):
    return f"{v['encoding']} {v['level']}" if v["encoding"] else "none"


def report_section(scen, notes):
    """Scenarios 12-15's tables; failures go into `notes` (the report's Failures list)."""
    ids = [sid for sid, sc in scen["scenarios"].items() if sc["kind"].startswith("edge-")]
    if not ids:
        return []
    edge = scen.get("edge", {})
    orig = edge.get("json_bytes")
    L = []
    missing = []  # not measured on purpose (not failures): listed under the tables

    def missing_row(sc, v, cells, cols):
        """The row of a variant not measured on purpose (its first `cells`, then *why*), or
        None; the reason goes under the table."""
        for what, d in (("not available", sc.get("unavailable", {})),
                        ("skipped", sc.get("skipped", {}))):
            if v["name"] in d:
                lead = f" ({_level(v)})" if v["encoding"] else ""
                missing.append(f"- {sc['title']} / {LABELS[v['name']]}{lead}: {what}: "
                               f"{d[v['name']]}")
                return f"| {' | '.join(cells)} | *{what}* |" + " |" * (cols - len(cells) - 1)
        return None

    def missing_lines():
        out = (["", "Not measured:", ""] + missing) if missing else []
        missing.clear()
        return out

    sc = scen["scenarios"].get("s12")
    if sc:
        agg = _agg(sc)
        base = agg.get("nginx", {})
        L += ["## Compression: 100 KiB JSON, gzip level 5 (scenario 12)", "",
              "| proxy | gzip level | req/s | ÷ NGINX | p50 ms | p99 ms | CPU µs/req | "
              "÷ NGINX | proxy CPU % | gzip body bytes | ÷ original | bytes/response | errors |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
              "| --- |"]
        for v in sc["spec"]["variants"]:
            lvl = ("5 (libslz: no levels)" if v["name"] == "haproxy" and edge.get("haproxy_slz")
                   else str(v["level"]))
            row = missing_row(sc, v, [LABELS[v["name"]], lvl], 13)
            x = agg.get(v["name"])
            if row or x is None:
                L += [row] if row else []
                continue
            L.append(f"| {LABELS[v['name']]} | {lvl} | {B.fmt(x['rps'], 0)} | "
                     f"{B.ratio(x['rps'], base.get('rps'))} | {B.fmt(x['p50_ms'], 3)} | "
                     f"{B.fmt(x['p99_ms'], 3)} | {B.fmt(x['cpu_us_per_req'], 1)} | "
                     f"{B.ratio(x['cpu_us_per_req'], base.get('cpu_us_per_req'))} | "
                     f"{_pct(x['cpu_util'])} | {B.fmt(x['body_bytes'], 0)} | "
                     f"{B.ratio(x['body_bytes'], orig, 3)} | {B.fmt(x['bytes_per_resp'], 0)} | "
                     f"{B.error_cell(x, sc, LABELS[v['name']], notes)} |")
        slz = ("Debian's HAProxy is built with **libslz** (`haproxy -vv`: \"Built with libslz\", "
               "no zlib): `tune.comp.maxlevel 5` is set but libslz has no levels, it always "
               "does its one fast pass, so its body is larger and its CPU lower than a zlib "
               "level 5; compare its bytes with its CPU." if edge.get("haproxy_slz") else "")
        L += ["", f"The origin serves a {orig:,}-byte JSON array (deterministic, generated by "
                  f"`bench/edge_scenarios.py`) uncompressed; each proxy compresses it with gzip "
                  f"level 5 for `wrk -H \"Accept-Encoding: gzip\"`. Before every run one "
                  f"response is decompressed with Python's zlib and compared to the original "
                  f"(a mismatch fails the run). *gzip body bytes*: the compressed body (chunk "
                  f"framing excluded); *bytes/response*: what wrk read per response during the "
                  f"run, head and framing included (a run whose responses were not compressed "
                  f"fails). Ratios to NGINX. {slz}".rstrip()]
        L += missing_lines() + [""]

    sc = scen["scenarios"].get("s13")
    if sc:
        agg = _agg(sc)
        ident = agg.get("weir-identity", {}).get("cpu_us_per_req")
        base = agg.get("nginx", {})
        L += ["## Compression per algorithm, weir (scenario 13)", "",
              "| server | algorithm, level | body bytes | saving % | req/s | ÷ NGINX gzip | "
              "CPU µs/req | ÷ NGINX gzip | + CPU µs/req vs none | proxy CPU % | errors |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for v in sc["spec"]["variants"]:
            server = "NGINX (reference)" if v["name"] == "nginx" else "weir"
            row = missing_row(sc, v, [server, _level(v)], 11)
            x = agg.get(v["name"])
            if row or x is None:
                L += [row] if row else []
                continue
            saving = (1 - x["body_bytes"] / orig) * 100 if x["body_bytes"] and orig else None
            extra = (x["cpu_us_per_req"] - ident if v["name"].startswith("weir") and ident
                     and x["cpu_us_per_req"] is not None and v["encoding"] else None)
            L.append(f"| {server} | {_level(v)} | {B.fmt(x['body_bytes'], 0)} | "
                     f"{B.fmt(saving, 1)} | {B.fmt(x['rps'], 0)} | "
                     f"{B.ratio(x['rps'], base.get('rps'))} | {B.fmt(x['cpu_us_per_req'], 1)} | "
                     f"{B.ratio(x['cpu_us_per_req'], base.get('cpu_us_per_req'))} | "
                     f"{B.fmt(extra, 1)} | {_pct(x['cpu_util'])} | "
                     f"{B.error_cell(x, sc, LABELS[v['name']] + ' ' + _level(v), notes)} |")
        L += ["", f"The same {orig:,}-byte JSON through weir with one algorithm per process at "
                  f"its default level (gzip 5, br 4, zstd 3), asked for by `Accept-Encoding`; "
                  f"*none* is the same weir without compression, so *+ CPU µs/req vs none* is "
                  f"what compressing one response costs. NGINX with gzip 5 is the reference "
                  f"line. Each response is checked before every run: gzip decompressed by "
                  f"zlib, br by python3-brotli, zstd by `zstd -d`, each compared to the "
                  f"original. *saving %*: 1 − body bytes ÷ original."]
        L += missing_lines() + [""]

    st_ids = [sid for sid in ("s14", "s15") if sid in scen["scenarios"]]
    if st_ids:
        L += ["## Static files (scenarios 14, 15)", "",
              "| file | server | req/s | ÷ NGINX | p50 ms | p99 ms | CPU µs/req | CPU µs/MiB | "
              "÷ NGINX | server CPU % | RSS MiB | errors |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for sid in st_ids:
            sc = scen["scenarios"][sid]
            agg = _agg(sc)
            base = agg.get("nginx-static", {})
            size = sc["spec"]["size"]
            what = f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"
            what += f", {sc['spec']['conns']} conns"
            for v in sc["spec"]["variants"]:
                name = v["name"]
                row = missing_row(sc, v, [what, LABELS[name]], 12)
                x = agg.get(name)
                if row or x is None:
                    L += [row] if row else []
                    continue
                L.append(f"| {what} | {LABELS[name]} | {B.fmt(x['rps'], 0)} | "
                         f"{B.ratio(x['rps'], base.get('rps'))} | {B.fmt(x['p50_ms'], 3)} | "
                         f"{B.fmt(x['p99_ms'], 3)} | {B.fmt(x['cpu_us_per_req'], 1)} | "
                         f"{B.fmt(x['cpu_us_per_mib'], 1)} | "
                         f"{B.ratio(x['cpu_us_per_mib'], base.get('cpu_us_per_mib'))} | "
                         f"{_pct(x['cpu_util'])} | {B.fmt(x['rss_mib'], 1)} | "
                         f"{B.error_cell(x, sc, LABELS[name], notes)} |")
        L += ["", "weir's `static:` route and NGINX (`root`, `sendfile on`, `tcp_nopush on`) serve "
                  "the same files from one directory, with no origin and no proxying; HAProxy "
                  "cannot serve files and is not in these two. Before every run the whole file "
                  "is fetched once and compared. *CPU µs/MiB*: the server's CPU ÷ MiB of file "
                  "sent, the figure to compare for the 20 MiB file (CPU µs/req for the 2 KiB "
                  "one: headers and system calls, not bytes, cost there); its ratio to NGINX "
                  "is also that of CPU per request. *server CPU %* below 100 means wrk, on the "
                  "other core, was the limit of req/s."]
        L += missing_lines() + [""]
    return L
