#!/usr/bin/python3
"""Writes the fuzz_h2_session seeds that reach the origin (fuzz/corpus/fuzz_h2_session/origin_*):
complete requests (SETTINGS + HEADERS with :authority) followed either by a PING whose last
byte picks one of the target's canned responses, or by the WEIR-ORIGIN: marker and a raw
response. Needs Debian's python3-hpack (/usr/bin/python3). The input format is described at
the top of fuzz_h2_session.cpp."""
import os
import struct

import hpack

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "fuzz_h2_session")
MARKER = b"WEIR-ORIGIN:"
CANNED = 16  # kCanned entries in fuzz_h2_session.cpp

HEADERS, DATA, SETTINGS, PING, WINDOW_UPDATE, RST_STREAM = 1, 0, 4, 6, 8, 3
END_STREAM, END_HEADERS = 0x1, 0x4


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def settings(**kv):
    ids = {"window": 4, "streams": 3, "frame": 5}
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", ids[k], v) for k, v in kv.items()))


def window_update(stream, inc):
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", inc))


def request(stream, method="GET", path="/", body=None, extra=()):
    enc = hpack.Encoder()
    fields = [(":method", method), (":scheme", "http"), (":path", path),
              (":authority", "example.com"), ("user-agent", "fuzz")] + list(extra)
    if body is not None:
        fields.append(("content-length", str(len(body))))
    block = enc.encode(fields)
    out = frame(HEADERS, END_HEADERS | (END_STREAM if body is None else 0), stream, block)
    if body is not None:
        out += frame(DATA, END_STREAM, stream, body)
    return out


def pick(canned, flags=0):
    """A PING whose last byte selects canned response `canned` with `flags`."""
    return frame(PING, 0, 0, b"\0" * 7 + bytes([canned + CANNED * flags]))


def raw(response, flags=0):
    return MARKER + bytes([flags]) + response


def main():
    os.makedirs(OUT, exist_ok=True)
    big = settings(window=1 << 20, streams=100) + window_update(0, 1 << 24)
    seeds = {}
    for i in range(CANNED):
        seeds[f"origin_get_canned_{i:02d}"] = settings() + request(1) + pick(i)
    seeds["origin_get_large_body_open_window"] = big + request(1) + pick(8)
    seeds["origin_get_chunks_open_window"] = big + request(1) + pick(14)
    seeds["origin_get_pieces_chunked"] = settings() + request(1) + pick(1, flags=1)
    seeds["origin_get_reset_close"] = settings() + request(1) + pick(7, flags=2)
    seeds["origin_head"] = settings() + request(1, method="HEAD") + pick(0)
    seeds["origin_post_cl"] = settings() + request(1, method="POST", body=b"hello world") + pick(0)
    seeds["origin_three_streams_keepalive"] = (
        settings() + request(1) + request(3, path="/a?b=c") + request(5, path="/x") + pick(0))
    seeds["origin_three_streams_rst"] = (
        settings() + request(1) + request(3) + frame(RST_STREAM, 0, 1, struct.pack(">I", 8))
        + request(5) + pick(8))
    seeds["origin_down_502"] = settings() + request(1, path="/down/x") + request(3) + pick(0)
    seeds["origin_raw_cl"] = settings() + request(1) + raw(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Drop: y\r\n\r\nhi")
    seeds["origin_raw_chunked_trailers_pieces"] = settings() + request(1) + raw(
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n", flags=1)
    seeds["origin_raw_close_delimited"] = settings() + request(1) + raw(
        b"HTTP/1.1 200 OK\r\n\r\nuntil close", flags=2)
    seeds["origin_raw_garbage_reset"] = settings() + request(1) + raw(
        b"HTTP/1.1 999\r\nContent-Length: -1\r\n\r\n", flags=2 | 4)
    seeds["origin_raw_hang"] = settings() + request(1) + raw(b"", flags=8)
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds)} seeds to {OUT}")


if __name__ == "__main__":
    main()
