#!/usr/bin/python3
"""Writes the fuzz_h2_upstream seeds (fuzz/corpus/fuzz_h2_upstream/): a select byte (the client
and the origin's flags) then the origin's side of an HTTP/2 connection in segments separated by
WEIR-NEXT: (segment 0 as the connection is accepted, segment k once weir sent k requests on it).
Header blocks are HPACK from Debian's python3-hpack (/usr/bin/python3), one encoder per
connection, so the dynamic table is exercised as a real server would. The input format is
described at the top of fuzz_h2_upstream.cpp."""
import os
import struct

import hpack

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "fuzz_h2_upstream")
NEXT = b"WEIR-NEXT:"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, CANCEL = 0, 1, 7, 8
S_HEADER_TABLE_SIZE, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE = 1, 3, 4, 5

# The client (select % 8) and the flags of fuzz_h2_upstream.cpp.
H1_GETS, H1_POST, H1_CHUNKED, H1_HEAD, H2_GETS, H2_GRPC, H2_POST, H2_CANCEL = range(8)
PIECES, CLOSE, RESET, EARLY_SHUT, GOOD_LATER = 8, 16, 32, 64, 128


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def settings(*pairs, ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


SETTINGS_ACK = settings(ack=True)


class Conn:
    """One connection's HPACK encoder."""

    def __init__(self):
        self.enc = hpack.Encoder()

    def block(self, fields):
        return self.enc.encode(fields)

    def headers(self, stream, fields, end_stream=False):
        return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), stream, self.block(fields))


def data(stream, payload, end_stream=False):
    return frame(DATA, END_STREAM if end_stream else 0, stream, payload)


def rst(stream, code):
    return frame(RST_STREAM, 0, stream, struct.pack(">I", code))


def goaway(last, code=NO_ERROR, debug=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + debug)


def window_update(stream, inc):
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", inc))


def ping(opaque=b"12345678", ack=False):
    return frame(PING, ACK if ack else 0, 0, opaque)


def seed(select, *segments):
    return bytes([select]) + NEXT.join(segments)


def grpc_message(payload):
    return b"\0" + struct.pack(">I", len(payload)) + payload


def main():
    os.makedirs(OUT, exist_ok=True)
    s = {}
    ok200 = [(":status", "200"), ("content-type", "text/plain")]

    c = Conn()
    s["h1_gets_200_data"] = seed(
        H1_GETS, settings(),
        SETTINGS_ACK + c.headers(1, ok200) + data(1, b"hello") + data(1, b" world", True),
        c.headers(3, ok200 + [("x-second", "1")]) + data(3, b"two", True))

    c = Conn()
    s["h1_gets_content_length"] = seed(
        H1_GETS, settings((S_MAX_FRAME_SIZE, 1 << 20)),
        c.headers(1, [(":status", "200"), ("content-length", "5")]) + data(1, b"hello", True),
        c.headers(3, [(":status", "204"), ("x-empty", "yes")], end_stream=True))

    c = Conn()
    s["h2_grpc_trailers_only"] = seed(
        H2_GRPC, settings(),
        c.headers(1, [(":status", "200"), ("content-type", "application/grpc"),
                      ("grpc-status", "14"), ("grpc-message", "unavailable")], end_stream=True))

    c = Conn()
    s["h2_grpc_data_trailers"] = seed(
        H2_GRPC, settings() + SETTINGS_ACK,
        c.headers(1, [(":status", "200"), ("content-type", "application/grpc")])
        + data(1, grpc_message(b"\x08\x2a")) + c.headers(1, [("grpc-status", "0"), ("grpc-message", "")],
                                                         end_stream=True))

    c = Conn()
    s["h1_chunked_post_data_trailers"] = seed(
        H1_CHUNKED, settings(),
        c.headers(1, ok200 + [("trailer", "x-sum")]) + data(1, b"abc")
        + c.headers(1, [("x-sum", "3"), ("x-other", "t")], end_stream=True))

    c = Conn()
    s["h1_gets_103_then_200"] = seed(
        H1_GETS, settings(),
        c.headers(1, [(":status", "103"), ("link", "</a.css>; rel=preload")])
        + c.headers(1, ok200 + [("content-length", "2")]) + data(1, b"ok", True),
        c.headers(3, [(":status", "100")]) + c.headers(3, [(":status", "404")], end_stream=True))

    c = Conn()
    s["h2_gets_103_then_200"] = seed(
        H2_GETS, settings(),
        c.headers(1, [(":status", "103"), ("link", "</b.js>; rel=preload")])
        + c.headers(1, ok200) + data(1, b"one", True),
        c.headers(3, ok200, end_stream=True))

    c = Conn()
    blk = c.block(ok200 + [("x-long", "v" * 200), ("set-cookie", "a=1"), ("set-cookie", "b=2")])
    blk3 = c.block([(":status", "103"), ("link", "</c>; rel=preload")])
    s["h2_gets_continuation"] = seed(
        H2_GETS, settings(),
        frame(HEADERS, 0, 1, blk[:10]) + frame(CONTINUATION, 0, 1, blk[10:50])
        + frame(CONTINUATION, END_HEADERS, 1, blk[50:]) + data(1, b"cont", True),
        frame(HEADERS, 0, 3, blk3[:3]) + frame(CONTINUATION, END_HEADERS, 3, blk3[3:])
        + c.headers(3, ok200, end_stream=True))

    c = Conn()
    s["h2_gets_goaway_mid_stream"] = seed(
        H2_GETS | GOOD_LATER, settings(),
        c.headers(1, ok200) + data(1, b"part ") + goaway(1, NO_ERROR, b"bye") + data(1, b"end", True))

    # REFUSED_STREAM: the request goes again at once (here on the same connection: stream 3).
    c = Conn()
    s["h1_gets_rst_refused_then_200"] = seed(
        H1_GETS, settings(), rst(1, REFUSED_STREAM),
        c.headers(3, ok200) + data(3, b"retried", True),
        c.headers(5, [(":status", "200"), ("content-length", "0")], end_stream=True))

    # Every stream refused, the retries too: bounded.
    s["h2_gets_rst_refused_all"] = seed(
        H2_GETS, settings(), *[rst(sid, REFUSED_STREAM) for sid in range(1, 17, 2)])

    # GOAWAY(last_stream_id=0): nothing was processed, the POST may go again on a new connection.
    s["h2_post_goaway_0"] = seed(H2_POST | GOOD_LATER, settings(), goaway(0))

    c = Conn()
    s["h2_gets_ping"] = seed(
        H2_GETS, settings() + ping(),
        ping(b"abcdefgh") + ping(ack=True) + c.headers(1, ok200) + data(1, b"p", True),
        c.headers(3, ok200, end_stream=True) + ping(b"\0" * 8))

    c = Conn()
    s["h2_gets_max_concurrent_1"] = seed(
        H2_GETS | GOOD_LATER, settings((S_MAX_CONCURRENT_STREAMS, 1)),
        c.headers(1, ok200) + data(1, b"single", True),
        c.headers(3, ok200) + data(3, b"after", True))

    s["h2_gets_max_concurrent_0"] = seed(H2_GETS, settings((S_MAX_CONCURRENT_STREAMS, 0)))

    c = Conn()
    s["h2_post_window_update"] = seed(
        H2_POST, settings((S_INITIAL_WINDOW_SIZE, 0)),
        window_update(0, 100) + window_update(1, 5) + window_update(1, 100)
        + c.headers(1, [(":status", "201")]) + data(1, b"created", True))

    c = Conn()
    big = [(":status", "200")] + [(f"x-field-{i:03d}", "value-" + "z" * 40) for i in range(50)]
    s["h1_gets_big_header_block"] = seed(
        H1_GETS, settings((S_HEADER_TABLE_SIZE, 256)),
        c.headers(1, big) + data(1, b"big", True),
        c.headers(3, big[:20], end_stream=True))

    s["h1_gets_preface_only"] = seed(H1_GETS, settings())
    s["h1_gets_http1_server"] = seed(
        H1_GETS, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    s["h2_gets_headers_before_settings"] = seed(H2_GETS, Conn().headers(1, ok200, end_stream=True))

    c = Conn()
    s["h1_gets_close_mid_body"] = seed(
        H1_GETS | CLOSE, settings(), c.headers(1, ok200 + [("content-length", "100")]) + data(1, b"cut"))

    c = Conn()
    s["h2_gets_reset_mid_body"] = seed(
        H2_GETS | CLOSE | RESET, settings(), c.headers(1, ok200) + data(1, b"cut by RST"))

    c = Conn()
    s["h2_gets_pieces"] = seed(
        H2_GETS | PIECES, settings(),
        c.headers(1, ok200 + [("content-length", "11")]) + data(1, b"hello") + data(1, b" world", True),
        c.headers(3, ok200) + data(3, b"x" * 40, True))

    c = Conn()
    s["h2_cancel_streaming"] = seed(
        H2_CANCEL, settings(),
        c.headers(1, ok200) + data(1, b"first part"),
        c.headers(3, ok200) + data(3, b"three", True) + data(1, b"after cancel", True))

    c = Conn()
    s["h1_post_early_shut"] = seed(
        H1_POST | EARLY_SHUT, settings(),
        c.headers(1, [(":status", "200"), ("content-length", "4")]) + data(1, b"done", True))

    c = Conn()
    s["h1_head_content_length"] = seed(
        H1_HEAD, settings(),
        c.headers(1, [(":status", "200"), ("content-length", "100")], end_stream=True),
        c.headers(3, ok200) + data(3, b"closing", True))

    c = Conn()
    s["h1_gets_content_length_mismatch"] = seed(
        H1_GETS, settings(),
        c.headers(1, [(":status", "200"), ("content-length", "10")]) + data(1, b"short", True),
        c.headers(3, [(":status", "200"), ("content-length", "2")]) + data(3, b"toolong", True))

    c = Conn()
    s["h2_gets_push_promise"] = seed(
        H2_GETS, settings(),
        frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2) + c.block(
            [(":method", "GET"), (":scheme", "http"), (":path", "/p"), (":authority", "x")])))

    c = Conn()
    s["h2_post_padded_priority_bad_status"] = seed(
        H2_POST, settings() + frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 15)),
        frame(HEADERS, END_HEADERS | PADDED | PRIORITY_FLAG, 1,
              b"\x04" + struct.pack(">IB", 0, 200) + c.block([(":status", "2x0")]) + b"\0" * 4)
        + data(1, b"never", True))

    c = Conn()
    s["h2_grpc_goaway_error_then_rst"] = seed(
        H2_GRPC | GOOD_LATER, settings(),
        goaway(0, PROTOCOL_ERROR, b"no") + rst(1, CANCEL))

    for name, payload in sorted(s.items()):
        assert len(payload) < 4096, name
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(payload)
    print(f"{len(s)} seeds in {OUT}")


if __name__ == "__main__":
    main()
