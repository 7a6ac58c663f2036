"""PROXY protocol v1/v2 both ways and SNI routing in tcp mode (proxy.md), against real
processes: raw headers (good, with TLVs, truncated, oversized, wrong signature, missing), a real
HAProxy with send-proxy-v2 in front of weir (plain and TLS after the header), weir with
send_proxy_protocol in front of HAProxy (accept-proxy, v2) and NGINX (proxy_protocol, v1), and
a tcp listener routing TLS by the ClientHello's server name, including a 16 KiB ClientHello
sent one byte per TCP segment."""

import os
import socket
import ssl
import struct
import subprocess
import time
import unittest

from tlstest import Certs, tls_connect
from weirtest import (HttpConn, Proc, WeirTestCase, free_port, require, wait_port, wait_until)

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src, sport, dst, dport, tlvs=b"", command=1, family=0x11, length=None):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlvs
    n = len(body) if length is None else length
    return SIG + bytes([0x20 | command, family]) + struct.pack("!H", n) + body


def tlv(kind, value: bytes):
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def exchange(port, data: bytes, timeout=5.0, source=None, pieces=None) -> bytes:
    """Sends data (optionally in pieces with pauses), returns all until the peer closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if pieces:
            for i in range(0, len(data), pieces):
                s.sendall(data[i:i + pieces])
                time.sleep(0.002)
        else:
            s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except ConnectionResetError:
            pass
        return out


GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def field(resp: bytes, name: str):
    for line in resp.decode(errors="replace").split("\n"):
        if line.lower().startswith(name.lower() + ": "):
            return line.split(": ", 1)[1].strip()
    return None


class ProxyProtocolInTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.app = self.start_whoami("app")
        self.port, self.tcp_port = free_port(), free_port()
        self.admin = free_port()
        self.lb = self.start_weir({
            "workers": 1, "admin": {"listen": f"127.0.0.1:{self.admin}"},
            "listeners": [
                {"name": "pp", "listen": f"127.0.0.1:{self.port}", "proxy_protocol": True,
                 "timeouts": {"header": "2s"}, "access": {"deny": ["198.51.100.66"]}, "backend": "app"},
                {"name": "pptcp", "listen": f"127.0.0.1:{self.tcp_port}", "mode": "tcp",
                 "proxy_protocol": True, "backend": "app"}],
            "backends": [{"name": "app", "servers": [{"address": self.app.address}]}]})

    def refused(self, listener="pp"):
        return self.lb.metrics().get("weir_refused_total", listener=listener, reason="proxy_protocol")

    def test_v1_names_the_client(self):
        r = exchange(self.port, b"PROXY TCP4 203.0.113.5 127.0.0.1 5555 80\r\n" + GET)
        self.assertTrue(r.startswith(b"HTTP/1.1 200"), r[:200])
        self.assertEqual(field(r, "X-Forwarded-For"), "203.0.113.5")
        r = exchange(self.port, b"PROXY TCP6 2001:db8::7 ::1 5555 80\r\n" + GET)
        self.assertEqual(field(r, "X-Forwarded-For"), "2001:db8::7")
        # UNKNOWN: the connection's own peer stays the client.
        r = exchange(self.port, b"PROXY UNKNOWN\r\n" + GET)
        self.assertEqual(field(r, "X-Forwarded-For"), "127.0.0.1")

    def test_v2_with_tlvs_and_split(self):
        h = v2_header("192.0.2.44", 4000, "127.0.0.1", self.port,
                      tlv(0x02, b"www.example.com") + tlv(0x05, b"id-1") + tlv(0xE0, b"x" * 300))
        r = exchange(self.port, h + GET)
        self.assertEqual(field(r, "X-Forwarded-For"), "192.0.2.44")
        r = exchange(self.port, h + GET, pieces=1)  # one byte per segment
        self.assertEqual(field(r, "X-Forwarded-For"), "192.0.2.44")
        # LOCAL command (health checks of the balancer in front): its own address.
        r = exchange(self.port, v2_header("0.0.0.0", 0, "0.0.0.0", 0, command=0) + GET)
        self.assertEqual(field(r, "X-Forwarded-For"), "127.0.0.1")

    def test_access_uses_the_named_client(self):
        r = exchange(self.port, b"PROXY TCP4 198.51.100.66 127.0.0.1 5555 80\r\n" + GET)
        self.assertTrue(r.startswith(b"HTTP/1.1 403"), r[:100])

    def test_hostile_headers_closed_and_counted(self):
        before = self.app_requests()
        cases = {
            "missing": GET,
            "truncated v1": b"PROXY TCP4 203.0.113.5 127.0.0",
            "v1 too long": b"PROXY TCP4 " + b"1" * 120 + b"\r\n" + GET,
            "bad v1 address": b"PROXY TCP4 203.0.113.500 127.0.0.1 1 2\r\n" + GET,
            "wrong signature": b"\r\n\r\n\x00\r\nQUIZ\n\x21\x11\x00\x0c" + b"\0" * 12 + GET,
            "truncated v2": v2_header("192.0.2.1", 1, "127.0.0.1", 2)[:20],
            "oversized v2": v2_header("192.0.2.1", 1, "127.0.0.1", 2, length=60000) + b"\0" * 3000,
            "v2 TLV overrun": v2_header("192.0.2.1", 1, "127.0.0.1", 2, tlvs=b"\x02\x00\x50abc"),
            "v2 bad command": v2_header("192.0.2.1", 1, "127.0.0.1", 2, command=7) + GET,
        }
        for name, data in cases.items():
            with self.subTest(name):
                t = time.monotonic()
                r = exchange(self.port, data, timeout=15)
                self.assertEqual(r, b"", name)
                if name != "truncated v1" and name != "truncated v2":
                    self.assertLess(time.monotonic() - t, 2.0, f"{name}: not closed at once")
        self.assertEqual(self.refused(), len(cases))
        self.assertEqual(self.app_requests(), before)  # nothing reached the backend
        self.assertEqual(exchange(self.tcp_port, GET), b"")
        r = exchange(self.tcp_port, b"PROXY TCP4 203.0.113.9 127.0.0.1 1 2\r\n" + GET)
        self.assertTrue(r.startswith(b"HTTP/1.1 200"), r[:100])
        self.assertEqual(self.refused("pptcp"), 1)

    def app_requests(self):
        return self.lb.metrics().get("weir_requests_total", listener="pp", backend="app")


class WithHaproxyAndNginxTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        require(os.path.exists("/usr/sbin/haproxy"), "haproxy (Debian package) is not installed", self)
        self.app = self.start_whoami("app")
        self.certs = Certs(self.env.tmp)

    def haproxy(self, text) -> Proc:
        path = os.path.join(self.env.tmp, f"haproxy-{free_port()}.cfg")
        with open(path, "w") as f:
            f.write("global\n  maxconn 1000\ndefaults\n  timeout connect 5s\n  timeout client 30s\n"
                    "  timeout server 30s\n" + text)
        subprocess.run(["/usr/sbin/haproxy", "-c", "-f", path], check=True, capture_output=True)
        return self.spawn(["/usr/sbin/haproxy", "-db", "-f", path], "haproxy")

    def test_haproxy_send_proxy_v2_in_front(self):
        plain, tls, hp, hp_tls = free_port(), free_port(), free_port(), free_port()
        self.start_weir({
            "workers": 1,
            "listeners": [
                {"name": "pp", "listen": f"127.0.0.1:{plain}", "proxy_protocol": True, "backend": "app"},
                {"name": "pptls", "listen": f"127.0.0.1:{tls}", "proxy_protocol": True,
                 "tls": {"certificates": [{"cert": self.certs.a.path, "key": self.certs.a.key}]},
                 "backend": "app"}],
            "backends": [{"name": "app", "servers": [{"address": self.app.address}]}]})
        self.haproxy(f"""frontend f
  mode tcp
  bind 127.0.0.1:{hp}
  default_backend b
backend b
  mode tcp
  server weir 127.0.0.1:{plain} send-proxy-v2
frontend ft
  mode tcp
  bind 127.0.0.1:{hp_tls}
  default_backend bt
backend bt
  mode tcp
  server weir 127.0.0.1:{tls} send-proxy-v2
""")
        wait_port(hp)
        wait_port(hp_tls)
        with HttpConn(hp, source="127.0.0.33") as c:
            r = c.request("GET", "/", None, None, "x")
        self.assertEqual(r.whoami_field("X-Forwarded-For"), "127.0.0.33")
        # TLS after the header: the handshake goes through HAProxy untouched.
        ctx = ssl.create_default_context(cafile=self.certs.ca)
        raw = socket.create_connection(("127.0.0.1", hp_tls), timeout=5, source_address=("127.0.0.34", 0))
        with ctx.wrap_socket(raw, server_hostname="a.test") as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        self.assertEqual(field(data, "X-Forwarded-For"), "127.0.0.34")
        self.assertEqual(field(data, "X-Forwarded-Proto"), "https")

    def test_weir_sends_v2_to_haproxy_and_v1_to_nginx(self):
        hp = free_port()
        self.haproxy(f"""frontend f
  mode http
  bind 127.0.0.1:{hp} accept-proxy
  http-request set-header X-PP-Src %[src]
  default_backend b
backend b
  mode http
  server app {self.app.address}
""")
        wait_port(hp)
        backends = [{"name": "hp", "send_proxy_protocol": "v2", "servers": [{"address": f"127.0.0.1:{hp}"}]}]
        listeners = [{"name": "to-hp", "listen": f"127.0.0.1:{free_port()}", "backend": "hp"}]
        have_nginx = os.path.exists("/usr/sbin/nginx")
        if have_nginx:
            ng = free_port()
            d = os.path.join(self.env.tmp, "nginx")
            os.makedirs(d, exist_ok=True)
            conf = os.path.join(d, "nginx.conf")
            with open(conf, "w") as f:
                f.write(f"""daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  server {{
    listen 127.0.0.1:{ng} proxy_protocol;
    location / {{
      proxy_set_header X-PP-Src $proxy_protocol_addr;
      proxy_pass http://{self.app.address};
    }}
  }}
}}
""")
            self.spawn(["/usr/sbin/nginx", "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")], "nginx")
            wait_port(ng)
            backends.append({"name": "ng", "send_proxy_protocol": "v1",
                             "servers": [{"address": f"127.0.0.1:{ng}"}]})
            listeners.append({"name": "to-ng", "listen": f"127.0.0.1:{free_port()}", "backend": "ng"})
        cfg = {"workers": 1, "listeners": listeners, "backends": backends}
        self.start_weir(cfg)
        for i, l in enumerate(listeners):
            port = int(l["listen"].rsplit(":", 1)[1])
            wait_port(port)
            src = f"127.0.0.{40 + i}"
            with HttpConn(port, source=src) as c:
                for _ in range(3):  # keep-alive: each request on its own PROXY'd connection or reused for this client
                    r = c.request("GET", "/", None, None, "x")
                    self.assertEqual(r.status, 200, l["name"])
                    self.assertEqual(field(r.body, "X-PP-Src"), src, r.text)
        if not have_nginx:
            self.skipTest("nginx is not installed: only HAProxy was checked")


class SniRoutingTest(WeirTestCase):
    def setUp(self):
        super().setUp()
        self.certs = Certs(self.env.tmp)
        a, b, plain = (self.start_whoami(n) for n in ("a", "b", "plain"))
        self.port, pa, pb = free_port(), free_port(), free_port()
        self.admin = free_port()
        self.lb = self.start_weir({
            "workers": 1, "admin": {"listen": f"127.0.0.1:{self.admin}"},
            "listeners": [
                {"name": "sni", "listen": f"127.0.0.1:{self.port}", "mode": "tcp",
                 "routes": [{"match": {"sni": "a.test"}, "backend": "tls-a"},
                            {"match": {"sni": "*.WILD.test"}, "backend": "tls-b"}],
                 "backend": "plain"},
                {"name": "ta", "listen": f"127.0.0.1:{pa}",
                 "tls": {"certificates": [{"cert": self.certs.a.path, "key": self.certs.a.key}]},
                 "backend": "a"},
                {"name": "tb", "listen": f"127.0.0.1:{pb}",
                 "tls": {"certificates": [{"cert": self.certs.a.path, "key": self.certs.a.key}]},
                 "backend": "b"}],
            "backends": [
                {"name": "tls-a", "servers": [{"address": f"127.0.0.1:{pa}"}]},
                {"name": "tls-b", "servers": [{"address": f"127.0.0.1:{pb}"}]},
                {"name": "a", "servers": [{"address": a.address}]},
                {"name": "b", "servers": [{"address": b.address}]},
                {"name": "plain", "servers": [{"address": plain.address}]}]})

    def get_tls(self, sni, alpn=None, one_byte=False):
        ctx = ssl.create_default_context(cafile=self.certs.ca)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname=sni)
        first = True

        def pump_out():
            nonlocal first
            data = out.read()
            if first and one_byte:
                for i in range(len(data)):
                    sock.send(data[i:i + 1])
                    time.sleep(0.0002)
            elif data:
                sock.sendall(data)
            first = False

        while True:
            try:
                obj.do_handshake()
                pump_out()
                break
            except ssl.SSLWantReadError:
                pump_out()
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                inc.write(chunk)
        obj.write(f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
        pump_out()
        data = b""
        while True:
            try:
                piece = obj.read(65536)
                if not piece:
                    break  # close_notify
                data += piece
                continue
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            inc.write(chunk)
        sock.close()
        return data

    def test_routes_by_server_name(self):
        self.assertEqual(field(self.get_tls("a.test"), "Name"), "a")
        self.assertEqual(field(self.get_tls("x.wild.test"), "Name"), "b")
        self.assertEqual(field(self.get_tls("X.Wild.Test"), "Name"), "b")  # case-insensitive
        # Not TLS: the catch-all (plain HTTP goes straight to the plain server).
        r = exchange(self.port, GET)
        self.assertEqual(field(r, "Name"), "plain")

    def test_split_16k_client_hello(self):
        alpn = ["p%03d" % i + "x" * 250 for i in range(62)] + ["http/1.1"]
        r = self.get_tls("a.test", alpn=alpn, one_byte=True)
        self.assertEqual(field(r, "Name"), "a")

    def test_bounded_wait(self):
        # A client that sends half a hello and stops: the header timeout ends the wait (the
        # catch-all then gets what was sent, here garbage it answers or closes).
        with socket.create_connection(("127.0.0.1", self.port), timeout=20) as s:
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            t = time.monotonic()
            try:
                while s.recv(4096):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
            self.assertLess(time.monotonic() - t, 15)


if __name__ == "__main__":
    unittest.main()
