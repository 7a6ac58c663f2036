"""grpcserver: the gRPC server of the end-to-end tests (test_grpc.py), run as a subprocess.

    /usr/bin/python3 grpcserver.py [--port N] [--cert PEM --key PEM] [--id NAME]
                                   [--max-streams N] [--workers N]

Debian's python3-grpcio with generic handlers: no codegen, no protobuf. Messages are raw bytes
(no serializers), so any client can build them by hand. Prints the port it listens on (one line,
the number alone) once it serves; --port 0 (the default) lets the kernel pick. SIGTERM/SIGINT
stop it (exit 0). TLS when --cert/--key are given.

Service `weir.test.Echo`:
- Unary(bytes) -> the same bytes. Initial metadata `x-server: ID`, trailing metadata
  `x-served-by: ID`. Request metadata `x-delay-ms: N` makes it wait N ms first.
- ServerStream(b"N" or b"N SIZE") -> N messages, b"item-I" (padded with "." to SIZE bytes).
- ClientStream(stream) -> b"COUNT:" + the messages concatenated.
- Bidi(stream) -> each message echoed as soon as it arrives (b"echo:" + message).
- Fail(b"CODE message") -> aborts with grpc.StatusCode[CODE] and that message (UTF-8).
- Sleep(b"MS") -> sleeps MS ms, polling for cancellation every 5 ms; answers b"slept MS".
  A call that stops being active before then is recorded as cancelled.
- Meta(anything) -> JSON: the request's invocation metadata as [[key, value], ...] (values of
  `-bin` keys as hex) and the peer.
- Stats(b"" or b"reset") -> JSON: calls per method, in-flight calls, the most in flight at once,
  Sleep calls completed / cancelled (each cancel with the ms it ran and the deadline time left,
  null without a deadline), and the distinct peers (context.peer(): one per TCP connection) of
  every call but Stats itself. b"reset" clears everything after answering.
An unknown method gets UNIMPLEMENTED from grpcio itself.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "weir.test.Echo"


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.calls: dict[str, int] = {}
        self.active = 0
        self.max_active = 0
        self.sleep_completed = 0
        self.cancelled = 0
        self.cancels: list[dict] = []
        self.peers: set[str] = set()

    def enter(self, method: str, context):
        with self.lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.peers.add(context.peer())

    def leave(self):
        with self.lock:
            self.active -= 1

    def snapshot(self) -> dict:
        with self.lock:
            return {"calls": dict(self.calls), "active": self.active, "max_active": self.max_active,
                    "sleep_completed": self.sleep_completed, "cancelled": self.cancelled,
                    "cancels": list(self.cancels), "peers": sorted(self.peers)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--id", default="grpc")
    ap.add_argument("--max-streams", type=int, default=0, help="grpc.max_concurrent_streams (0: grpcio's default)")
    ap.add_argument("--workers", type=int, default=400, help="handler threads (one per call in progress)")
    args = ap.parse_args()

    state = State()
    server_id = args.id

    def tracked(method, fn):
        def handler(request, context):
            state.enter(method, context)
            try:
                return fn(request, context)
            finally:
                state.leave()
        return handler

    def tracked_stream(method, fn):
        def handler(request, context):
            state.enter(method, context)
            try:
                yield from fn(request, context)
            finally:
                state.leave()
        return handler

    def unary(request: bytes, context):
        md = dict(context.invocation_metadata())
        delay = int(md.get("x-delay-ms", "0") or 0)
        if delay:
            time.sleep(delay / 1000)
        context.send_initial_metadata((("x-server", server_id),))
        context.set_trailing_metadata((("x-served-by", server_id),))
        return request

    def server_stream(request: bytes, context):
        parts = request.split()
        n = int(parts[0]) if parts else 0
        size = int(parts[1]) if len(parts) > 1 else 0
        context.send_initial_metadata((("x-server", server_id),))
        for i in range(n):
            if not context.is_active():
                return
            msg = b"item-%d" % i
            yield msg + b"." * max(0, size - len(msg))

    def client_stream(request_iterator, context):
        msgs = list(request_iterator)
        context.send_initial_metadata((("x-server", server_id),))
        return b"%d:" % len(msgs) + b"".join(msgs)

    def bidi(request_iterator, context):
        context.send_initial_metadata((("x-server", server_id),))
        for msg in request_iterator:
            yield b"echo:" + msg

    def fail(request: bytes, context):
        code, _, message = request.decode("utf-8").partition(" ")
        context.abort(grpc.StatusCode[code], message)

    def sleep(request: bytes, context):
        ms = int(request or b"0")
        t0 = time.monotonic()
        end = t0 + ms / 1000
        while time.monotonic() < end:
            if not context.is_active():
                left = context.time_remaining()
                with state.lock:
                    state.cancelled += 1
                    state.cancels.append({"ran_ms": round((time.monotonic() - t0) * 1000),
                                          "deadline_left_ms": None if left is None else round(left * 1000)})
                return b""
            time.sleep(0.005)
        with state.lock:
            state.sleep_completed += 1
        return b"slept %d" % ms

    def meta(request: bytes, context):
        md = [[k, v.hex() if isinstance(v, bytes) else v] for k, v in context.invocation_metadata()]
        return json.dumps({"metadata": md, "peer": context.peer()}).encode()

    def stats(request: bytes, context):
        out = json.dumps(state.snapshot()).encode()
        if request == b"reset":
            with state.lock:
                active = state.active
                state.reset()
                state.active = active
        return out

    uu, us = grpc.unary_unary_rpc_method_handler, grpc.unary_stream_rpc_method_handler
    su, ss = grpc.stream_unary_rpc_method_handler, grpc.stream_stream_rpc_method_handler
    handlers = {
        "Unary": uu(tracked("Unary", unary)),
        "ServerStream": us(tracked_stream("ServerStream", server_stream)),
        "ClientStream": su(tracked("ClientStream", client_stream)),
        "Bidi": ss(tracked_stream("Bidi", bidi)),
        "Fail": uu(tracked("Fail", fail)),
        "Sleep": uu(tracked("Sleep", sleep)),
        "Meta": uu(tracked("Meta", meta)),
        "Stats": uu(stats),
    }
    options = [("grpc.so_reuseport", 0)]
    if args.max_streams:
        options.append(("grpc.max_concurrent_streams", args.max_streams))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers), options=options,
                         handlers=[grpc.method_handlers_generic_handler(SERVICE, handlers)])
    address = f"{args.host}:{args.port}"
    if args.cert:
        with open(args.cert, "rb") as f:
            cert = f.read()
        with open(args.key, "rb") as f:
            key = f.read()
        port = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port(address)
    if not port:
        print(f"grpcserver: cannot listen on {address}", file=sys.stderr, flush=True)
        sys.exit(3)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(port, flush=True)
    while not stop.wait(0.5):
        pass
    server.stop(grace=None).wait(5)
    sys.exit(0)


if __name__ == "__main__":
    main()
