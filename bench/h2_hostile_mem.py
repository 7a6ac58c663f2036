#!/usr/bin/python3
"""Worst-case memory of ONE hostile HTTP/2 connection to weir.

    /usr/bin/python3 bench/h2_hostile_mem.py --weir build/release/weir [--json]
        [--variants get-window0,get-stall,post-silent,mix] [--hold 4]

Starts its own backends on 127.0.0.1 (`weir whoami`, and in-process Python servers that accept
and never read), then, for each variant, a fresh `weir run` with one h2c listener (HTTP/2 with
prior knowledge, default limits: 100 concurrent streams, 256 KiB stream window, 1 MiB connection
window), and opens ONE h2c connection that makes weir hold as much memory as the protocol
lets it:

  get-window0  N streams (N = weir's SETTINGS_MAX_CONCURRENT_STREAMS, 100 by default) of
               `GET /?size=10000000` to `weir whoami`; the client's SETTINGS say INITIAL_WINDOW_SIZE 0, it never sends WINDOW_UPDATE
               and stops reading the socket after sending: every response stalls in weir.
  get-stall    the same GETs, but the client takes the first 256 KiB of every response
               (INITIAL_WINDOW_SIZE 256 KiB, the connection window opened once for all of them)
               and then never opens a window again: the responses stall after weir's buffers
               have cycled (a pipe that was drained and refilled keeps its high-water mark).
  post-silent  N streams of POSTs (Content-Length 100 MB) to a server that accepts and never
               reads; the client sends DATA as fast as weir's stream and connection windows
               allow (it reads only to get the WINDOW_UPDATEs), until the upstream sockets are
               full and the windows stay shut.
  mix          both directions at once: N POST streams with ~12 KB of request headers each, to
               a server that answers every request at once with a 100 MB body and never reads;
               the client fills the request windows as in post-silent and takes 256 KiB of
               each response as in get-stall.

Figures per variant: weir's VmRSS (/proc/PID/status) just before the connection (after one
small warm-up h2c request on another connection, closed), the peak while the connection is held
(sampled every 50 ms for --hold seconds), the delta in MiB (the figure), plus RssAnon (heap
only, without code pages touched for the first time) and what the client saw (responses
started, request bytes accepted, GOAWAY). The worst variant is the result. Every variant is
bounded (~20 s) and stops what it started, by pid.

Importable: measure(weir_bin, variants=None, hold=4.0) -> dict (for an end-to-end test that
asserts the bound). Standard library + python3-h2 (Debian) only.
"""

import argparse
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.settings import SettingCodes

# The client opens as many streams as weir's SETTINGS_MAX_CONCURRENT_STREAMS allow (100 by
# default, h2_max_concurrent_streams), at most STREAM_CAP.
STREAM_CAP = 1000
BIG_GET = "/?size=10000000"  # whoami's response body size
BIG_POST = 100_000_000  # Content-Length of the uploads (never reached)
HEADER_PAD = 12  # mix: 12 headers of 1,000 bytes (weir's max_header_bytes is 16 KiB)
VARIANT_DEADLINE = 20.0  # seconds, start of weir to its stop

STALL_WINDOW = 256 * 1024  # get-stall / mix: response bytes the client takes per stream

# client_window: the client's SETTINGS_INITIAL_WINDOW_SIZE; with more than 65,535 the connection
# window is opened once by streams x client_window, and never again: once that much has
# arrived, nothing more can leave weir. read_while_held: the client keeps reading its socket
# (to take those bytes and weir's WINDOW_UPDATEs) or stops reading after sending its requests.
VARIANTS = {
    "get-window0": {
        "desc": "N GET streams of 10 MB responses (whoami); client window 0 (no DATA "
                "can leave weir), the client stops reading",
        "backend": "whoami", "method": "GET", "client_window": 0, "send_body": False,
        "read_while_held": False, "header_pad": 0,
    },
    "get-stall": {
        "desc": "N GET streams of 10 MB responses (whoami); the client takes the first "
                "256 KiB of each, then never opens a window again",
        "backend": "whoami", "method": "GET", "client_window": STALL_WINDOW, "send_body": False,
        "read_while_held": True, "header_pad": 0,
    },
    "post-silent": {
        "desc": "N POST streams (100 MB bodies) to a server that never reads; the "
                "client fills every window weir opens",
        "backend": "silent", "method": "POST", "client_window": 0, "send_body": True,
        "read_while_held": True, "header_pad": 0,
    },
    "mix": {
        "desc": "N POST streams with ~12 KB of headers to a server that answers at once "
                "(100 MB) and never reads; the client fills every request window weir opens, "
                "takes 256 KiB of each response, then stalls",
        "backend": "answer", "method": "POST", "client_window": STALL_WINDOW, "send_body": True,
        "read_while_held": True, "header_pad": HEADER_PAD,
    },
}


# --------------------------------------------------------------------------- helpers

def proc_status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def free_port():
    """A free port below the ephemeral range (32768+), so that no client connection of this
    machine can take it between now and weir's bind (as bench.py does)."""
    import random
    for _ in range(1000):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


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


def stop(proc, timeout=5.0):
    """SIGTERM, then SIGKILL, of one process we started (by its pid)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    except OSError:
        pass


class Sampler(threading.Thread):
    """Peak VmRSS / RssAnon of a pid, sampled every `period` seconds until stopped."""

    def __init__(self, pid, period=0.05):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak_rss = self.peak_anon = 0
        self.peak_at = 0.0  # seconds after start() when the peak VmRSS was first seen
        self.samples = 0
        self.t0 = time.monotonic()
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.period)

    def sample(self):
        rss = proc_status_kib(self.pid, "VmRSS")
        anon = proc_status_kib(self.pid, "RssAnon")
        if rss > self.peak_rss:
            self.peak_at = time.monotonic() - self.t0
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_anon = max(self.peak_anon, anon)
        self.samples += 1

    def stop(self):
        self._halt.set()
        self.join(2)
        self.sample()


class SinkServer(threading.Thread):
    """A backend that accepts and never reads. mode "silent": never answers either; mode
    "answer": sends a response head (Content-Length 100 MB) and body bytes as fast as the socket
    takes them, up to `push` bytes per connection. A small SO_RCVBUF (inherited by accepted
    sockets) makes weir's upstream writes block early."""

    def __init__(self, mode, rcvbuf=4096, push=2 << 20):
        super().__init__(daemon=True)
        self.mode, self.push = mode, push
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1024)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.accepted = 0
        self._halt = threading.Event()
        self._conns = {}  # sock -> bytes still to push
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {BIG_POST}\r\n\r\n").encode()
        self._first = head + b"x" * (65536 - len(head))
        self._chunk = b"x" * 65536

    def run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.lsock, selectors.EVENT_READ)
        try:
            while not self._halt.is_set():
                for key, _ in sel.select(0.05):
                    if key.fileobj is self.lsock:
                        while True:
                            try:
                                c, _ = self.lsock.accept()
                            except (BlockingIOError, OSError):
                                break
                            c.setblocking(False)
                            self.accepted += 1
                            if self.mode == "answer":
                                self._conns[c] = self.push
                                self._send(c, first=True)
                                if self._conns.get(c, 0) > 0:
                                    sel.register(c, selectors.EVENT_WRITE)
                            else:
                                self._conns[c] = 0  # held open, never read
                    else:
                        c = key.fileobj
                        self._send(c)
                        if self._conns.get(c, 0) <= 0:
                            sel.unregister(c)
        finally:
            sel.close()

    def _send(self, c, first=False):
        left = self._conns.get(c, 0)
        data = self._first if first else self._chunk
        while left > 0:
            try:
                n = c.send(data)
            except BlockingIOError:
                break
            except OSError:
                left = 0
                break
            left -= n
            data = self._chunk
        self._conns[c] = left

    def close(self):
        self._halt.set()
        self.join(2)
        for c in list(self._conns):
            c.close()
        self._conns.clear()
        self.lsock.close()


# --------------------------------------------------------------------------- weir

WEIR_CONF = """workers: 1
limits:
  drain_timeout: 1s
listeners:
  - name: h2
    listen: 127.0.0.1:{port}
    h2c: true
    routes:
      - match: {{ path_prefix: /warm-up }}
        backend: warm
    backend: b
backends:
  - name: b
    servers:
      - address: 127.0.0.1:{backend_port}
  - name: warm
    servers:
      - address: 127.0.0.1:{warm_port}
"""


def start_weir(weir_bin, tmp, backend_port, warm_port, tag):
    port = free_port()
    conf = os.path.join(tmp, f"weir-{tag}.yaml")
    with open(conf, "w") as f:
        f.write(WEIR_CONF.format(port=port, backend_port=backend_port, warm_port=warm_port))
    logf = open(os.path.join(tmp, f"weir-{tag}.log"), "w")
    p = subprocess.Popen([weir_bin, "run", "-c", conf], stdout=logf, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)
    logf.close()
    if not wait_port(port, 10, p):
        stop(p)
        raise RuntimeError(f"weir did not start: {tail(os.path.join(tmp, f'weir-{tag}.log'))}")
    return p, port


def tail(path, n=10):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------- the client

class Client:
    """One h2c connection (prior knowledge) driven by hand with python3-h2."""

    def __init__(self, port, window=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                        validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=cfg)
        if window is not None:
            # e.g. INITIAL_WINDOW_SIZE 0: weir may send HEADERS but no DATA on any stream
            self.conn.local_settings = h2.settings.Settings(
                client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: window,
                                             SettingCodes.ENABLE_PUSH: 0})
        self.pending = b""  # bytes h2 produced that the socket did not take yet
        self.conn.initiate_connection()
        self.flush()
        self.settings_seen = False
        self.responses = 0  # response HEADERS received
        self.resets = 0
        self.goaway = None  # error code name, if weir sent GOAWAY
        self.closed = False
        self.data_in = 0
        self.body_sent = 0

    def flush(self, timeout=5.0):
        """Blocking (at most `timeout`): everything queued goes out, in order."""
        self.pending += self.conn.data_to_send()
        if not self.pending:
            return
        self.sock.settimeout(timeout)
        self.sock.sendall(self.pending)
        self.pending = b""

    def try_flush(self):
        """Non-blocking: what does not fit stays queued in `pending` (the client never blocks
        on a peer that does not read)."""
        self.pending += self.conn.data_to_send()
        if not self.pending or self.closed:
            return
        self.sock.setblocking(False)
        try:
            n = self.sock.send(self.pending)
            self.pending = self.pending[n:]
        except BlockingIOError:
            pass
        except OSError:
            self.closed = True
            self.pending = b""

    def read(self, timeout):
        """Reads whatever arrives within `timeout` seconds; returns False once closed."""
        if self.closed:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except (socket.timeout, BlockingIOError):
            return True
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return False
        for ev in events:
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                self.settings_seen = True
            elif isinstance(ev, h2.events.ResponseReceived):
                self.responses += 1
            elif isinstance(ev, h2.events.DataReceived):
                self.data_in += len(ev.data)  # never acknowledged: windows stay shut
            elif isinstance(ev, h2.events.StreamReset):
                self.resets += 1
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = getattr(ev.error_code, "name", str(ev.error_code))
        return True

    def wait_settings(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not self.settings_seen and time.monotonic() < deadline:
            if not self.read(0.1):
                break
        self.flush()  # SETTINGS ACK
        if not self.settings_seen:
            raise RuntimeError("no SETTINGS from weir")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def warm_up(port):
    """One small GET over h2c (routed to whoami) on a connection of its own, closed before the
    measurement, so that code paths (and their pages) used by any HTTP/2 connection are not
    counted."""
    c = Client(port)
    try:
        c.wait_settings()
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(b":method", b"GET"), (b":path", b"/warm-up?size=100"),
                                  (b":scheme", b"http"), (b":authority", b"bench.local")],
                            end_stream=True)
        c.flush()
        deadline = time.monotonic() + 5
        done = False
        while not done and time.monotonic() < deadline and not c.closed:
            c.sock.settimeout(0.2)
            try:
                data = c.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                break
            for ev in c.conn.receive_data(data):
                if isinstance(ev, h2.events.DataReceived):
                    c.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    done = True
            c.flush()
        if not done:
            raise RuntimeError("warm-up request got no complete answer")
    finally:
        c.close()


def open_streams(c, v):
    """As many request streams as weir allows (its MAX_CONCURRENT_STREAMS, at most
    STREAM_CAP): the request heads only (and END_STREAM for GETs)."""
    limit = min(STREAM_CAP, c.conn.remote_settings.max_concurrent_streams)
    pad = [(f"x-pad-{i}".encode(), b"p" * 1000) for i in range(v["header_pad"])]
    sids = []
    for _ in range(limit):
        sid = c.conn.get_next_available_stream_id()
        hdrs = [(b":method", v["method"].encode()),
                (b":path", BIG_GET.encode() if v["method"] == "GET" else b"/upload"),
                (b":scheme", b"http"), (b":authority", b"bench.local")]
        if v["method"] == "POST":
            hdrs += [(b"content-type", b"application/octet-stream"),
                     (b"content-length", str(BIG_POST).encode())]
        hdrs += pad
        c.conn.send_headers(sid, hdrs, end_stream=(v["method"] == "GET"))
        sids.append(sid)
    c.flush()
    return sids


CHUNK = b"\x00" * 16384


def fill_windows(c, sids):
    """Sends DATA round robin on every stream while the stream and connection windows allow;
    returns the bytes queued."""
    sent = 0
    progress = True
    while progress:
        progress = False
        for sid in sids:
            try:
                w = c.conn.local_flow_control_window(sid)
            except (h2.exceptions.StreamClosedError, KeyError, h2.exceptions.ProtocolError):
                continue
            n = min(w, c.conn.max_outbound_frame_size, len(CHUNK))
            if n <= 0:
                continue
            try:
                c.conn.send_data(sid, CHUNK[:n])
            except (h2.exceptions.StreamClosedError, h2.exceptions.FlowControlError,
                    h2.exceptions.ProtocolError):
                continue
            sent += n
            progress = True
        if len(c.pending) > (4 << 20):
            break  # weir is not reading: stop queueing
    c.try_flush()
    return sent


# --------------------------------------------------------------------------- one variant

def run_variant(weir_bin, name, backends, tmp, hold):
    v = VARIANTS[name]
    t_start = time.monotonic()
    proc = None
    client = None
    try:
        proc, port = start_weir(weir_bin, tmp, backends[v["backend"]], backends["whoami"], name)
        pid = proc.pid
        warm_up(port)
        time.sleep(0.3)
        before = proc_status_kib(pid, "VmRSS")
        before_anon = proc_status_kib(pid, "RssAnon")
        sampler = Sampler(pid)
        sampler.start()
        try:
            client = Client(port, window=v["client_window"])
            client.wait_settings()
            sids = open_streams(client, v)
            if v["client_window"] > 65535:
                # the connection window: exactly what the streams' windows add up to
                client.conn.increment_flow_control_window(
                    len(sids) * v["client_window"] - 65535)
                client.flush()
            hold_end = min(time.monotonic() + hold, t_start + VARIANT_DEADLINE - 3)
            while time.monotonic() < hold_end and proc.poll() is None:
                if v["send_body"]:
                    client.body_sent += fill_windows(client, sids)
                if v["read_while_held"]:
                    client.read(0.05)  # WINDOW_UPDATEs (and response HEADERS) only
                    client.try_flush()  # e.g. ACKs the h2 state machine queued
                else:
                    time.sleep(0.05)  # the socket is not read at all
        finally:
            sampler.stop()
        alive = proc.poll() is None
        held_rss = proc_status_kib(pid, "VmRSS") if alive else 0
        # what weir did with the connection: read what it sent (still no window opened)
        drain_end = time.monotonic() + 0.5
        while client is not None and time.monotonic() < drain_end and client.read(0.1):
            pass
        r = {
            "variant": name,
            "desc": v["desc"],
            "streams": len(sids),
            "rss_before_kib": before,
            "rss_peak_kib": sampler.peak_rss,
            "rss_held_end_kib": held_rss,
            "delta_mib": (sampler.peak_rss - before) / 1024.0,
            "anon_before_kib": before_anon,
            "anon_peak_kib": sampler.peak_anon,
            "anon_delta_mib": (sampler.peak_anon - before_anon) / 1024.0,
            "samples": sampler.samples,
            "peak_at_s": sampler.peak_at,
            "hold_s": hold,
            "responses_started": client.responses,
            "response_bytes_received": client.data_in,
            # DATA bytes the client handed to h2 within weir's windows; weir passed all but
            # the last windows' worth on to the upstream sockets (kernel buffers, not RSS)
            "request_body_bytes_sent": client.body_sent,
            "stream_resets": client.resets,
            "goaway": client.goaway,
            "connection_closed_by_weir": client.closed,
            "weir_alive": alive,
            "seconds": time.monotonic() - t_start,
        }
        if not alive:
            r["failed"] = f"weir died (exit {proc.returncode}): {tail(os.path.join(tmp, f'weir-{name}.log'), 3)}"
        return r
    except (RuntimeError, OSError, h2.exceptions.H2Error) as e:
        return {"variant": name, "desc": v["desc"], "failed": f"{type(e).__name__}: {e}",
                "seconds": time.monotonic() - t_start}
    finally:
        if client is not None:
            client.close()
        stop(proc)


def measure(weir_bin, variants=None, hold=4.0):
    """Runs the variants (default: all) against fresh weir processes; returns
    {"variants": {name: result}, "worst": name, "worst_delta_mib": MiB, ...}."""
    weir_bin = os.path.abspath(weir_bin)
    if not os.access(weir_bin, os.X_OK):
        raise FileNotFoundError(f"weir binary not found: {weir_bin}")
    names = list(variants or VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    hold = max(0.5, min(float(hold), VARIANT_DEADLINE - 5))
    tmp = tempfile.mkdtemp(prefix="weir-h2mem-")
    whoami = None
    sinks = []
    out = {"weir": weir_bin, "hold_s": hold, "sample_period_s": 0.05, "variants": {}}
    try:
        backends = {}
        needed = {VARIANTS[n]["backend"] for n in names}
        # whoami: get-window0's backend, and the warm-up request's in every variant
        wport = free_port()
        logf = open(os.path.join(tmp, "whoami.log"), "w")
        whoami = subprocess.Popen([weir_bin, "whoami", "--listen", f"127.0.0.1:{wport}",
                                   "--name", "h2mem"], stdout=logf,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        logf.close()
        if not wait_port(wport, 10, whoami):
            raise RuntimeError("weir whoami did not start: " +
                               tail(os.path.join(tmp, "whoami.log")))
        backends["whoami"] = wport
        for mode in ("silent", "answer"):
            if mode in needed:
                s = SinkServer(mode)
                s.start()
                sinks.append(s)
                backends[mode] = s.port
        try:
            out["weir_version"] = subprocess.run([weir_bin, "version"], stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT, text=True,
                                                 timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            out["weir_version"] = "?"
        for n in names:
            out["variants"][n] = run_variant(weir_bin, n, backends, tmp, hold)
            time.sleep(0.2)
    finally:
        stop(whoami)
        for s in sinks:
            s.close()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    good = {n: r for n, r in out["variants"].items() if "failed" not in r}
    if good:
        worst = max(good, key=lambda n: good[n]["delta_mib"])
        out["worst"] = worst
        out["worst_delta_mib"] = good[worst]["delta_mib"]
    else:
        out["worst"] = None
        out["worst_delta_mib"] = None
    out["failed"] = sorted(n for n in out["variants"] if n not in good)
    return out


def table(res):
    L = [f"weir: {res.get('weir_version', '?')} ({res['weir']}); one h2c connection, "
         f"held {res['hold_s']:g} s, VmRSS sampled every 50 ms",
         "",
         "| variant | streams | RSS before MiB | RSS peak MiB | delta MiB | anon delta MiB | "
         "responses started | response bytes taken | request bytes sent | GOAWAY |",
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for n, r in res["variants"].items():
        if "failed" in r:
            L.append(f"| {n} | FAILED: {r['failed'][:120]} | | | | | | | | |")
            continue
        L.append(f"| {n} | {r['streams']} | {r['rss_before_kib'] / 1024:.1f} | "
                 f"{r['rss_peak_kib'] / 1024:.1f} | **{r['delta_mib']:.2f}** | "
                 f"{r['anon_delta_mib']:.2f} | {r['responses_started']} | "
                 f"{r['response_bytes_received']:,} | {r['request_body_bytes_sent']:,} | "
                 f"{r['goaway'] or '-'} |")
    L.append("")
    for n, r in res["variants"].items():
        L.append(f"- {n}: {r['desc']}")
    if res["worst"]:
        L.append("")
        L.append(f"Worst: {res['worst']}, {res['worst_delta_mib']:.2f} MiB held by one "
                 f"connection.")
    return "\n".join(L)


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # unwind: every `finally` stops what it started


def main():
    signal.signal(signal.SIGTERM, _terminate)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--weir", default=os.environ.get("WEIR_BIN", os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build/release/weir")),
        help="the weir binary (default: $WEIR_BIN or build/release/weir)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--variants", default="",
                    help=f"comma-separated subset of {','.join(VARIANTS)}")
    ap.add_argument("--hold", type=float, default=4.0,
                    help="seconds the connection is held and sampled (default 4)")
    a = ap.parse_args()
    names = [x.strip() for x in a.variants.split(",") if x.strip()] or None
    try:
        res = measure(a.weir, names, a.hold)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"h2_hostile_mem: {e}")
    print(json.dumps(res, indent=1) if a.json else table(res))
    return 0 if res["worst"] is not None and not res["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
