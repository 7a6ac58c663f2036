"""The client of test_vrrp_failover.py, run inside the client namespace (ip netns exec): loops
GET / to HOST:PORT, one new connection per request with short timeouts, and appends one line per
request to OUT: `<monotonic seconds> ok <whoami name>` or `<monotonic seconds> fail <reason>`
(the time is when the request started; CLOCK_MONOTONIC is the same in every namespace). Stops
when the file STOP exists or after MAX seconds.

usage: vrrp_client.py HOST PORT OUT STOP MAX
"""

import os
import signal
import socket
import sys
import time


def one(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=0.3) as s:
        s.settimeout(1.0)
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    if not status.startswith("HTTP/1.1 200"):
        return f"fail status {status!r}"
    first = body.split(b"\n", 1)[0].decode("latin-1")
    if not first.startswith("Name: "):
        return f"fail body {first!r}"
    return "ok " + first[len("Name: "):]


def main():
    host, port, out, stop, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    end = time.monotonic() + limit
    with open(out, "a", buffering=1) as f:
        while time.monotonic() < end and not os.path.exists(stop):
            t = time.monotonic()
            try:
                result = one(host, port)
            except OSError as e:
                result = f"fail {type(e).__name__} {e}".replace("\n", " ")
            f.write(f"{t:.6f} {result}\n")
            time.sleep(0.02)


if __name__ == "__main__":
    main()
