#pragma once
// Response compression (edge.md "Compression"), as building blocks the compression filter puts
// together: pick a coding from the request's Accept-Encoding, decide whether a response may be
// compressed, edit its head, and a streaming compressor as a BodyFilter.
//
// Memory per compressed response: the library's allocations (counted through its allocator
// hooks) plus the compressor object, measured with libz 1.2.13, brotli 1.0.9, zstd 1.5.4 and
// asserted by compression_test.cpp:
//   gzip  windowBits 15, memLevel 8                     any level        262 KiB
//   br    lgwin 18 (256 KiB window), <= 16 KiB a call   level 4 (default) 1.32 MiB
//         q0-1 0.17-0.19, q2-3 1.0, q5 1.85, q6 2.85, q7 8.9, q8 16.9, q9 33, q10-11 3.8-4.4 MiB
//   zstd  windowLog 19 (512 KiB), hash/chainLog <= 18   level 3 (default) 1.99 MiB
//         1: 1.31, 2: 1.49, 4-19: 2.7-4.0 MiB
// A known length (`size_hint`, e.g. Content-Length) sizes the window and tables to the body:
// for 2 KB, 38 KiB (gzip), 63 KiB (zstd), 0.72 MiB (br q4: its hasher has a fixed size).
// gzip and zstd allocate everything when the compressor is made and nothing afterwards; brotli
// grows its ring buffer with the first input and allocates scratch per meta-block (within the
// peaks above; input goes in at most 16 KiB per call so a meta-block stays small).
//
// Flush policy: every on_body call that hands input ends with a flush (Z_SYNC_FLUSH,
// BROTLI_OPERATION_FLUSH, ZSTD_e_flush), and that input is reported `used` only once the flush is
// complete (the last byte is held back until then, so the exchange calls again). So the client
// can decode everything the server has sent once it is through weir: a server-sent event or a
// streamed page is never held inside the compressor, and a slow client still slows the server
// (output never exceeds `out`). Why not batch: the exchange offers all payload it holds in one
// call and calls only when more arrives, so the compressor cannot tell a pause from a gap between
// reads. A flush costs a few bytes (a block header, byte alignment; zlib's marker is 4-5 bytes)
// and a block boundary: small for reads of kilobytes, noticeable for a chunked body of many tiny
// chunks (the exchange hands each chunk's payload in its own call).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "http/parser.hpp"
#include "proxy/filter.hpp"
#include "proxy/head_edits.hpp"

namespace weir::config {
struct Compression;
}

namespace weir::proxy {

enum class Encoding : uint8_t { Identity, Gzip, Brotli, Zstd };

// "identity", "gzip", "br", "zstd".
std::string_view token(Encoding e);
// The config's names (case-insensitive): "gzip", "br", "zstd"; nullopt for anything else.
std::optional<Encoding> parse_encoding(std::string_view name);

// Elements of Accept-Encoding looked at, over all its fields; the rest are ignored.
inline constexpr size_t kMaxAcceptEncodingElements = 64;

// The coding for a response (RFC 9110 12.5.3): `accept_encoding_values` are the values of every
// Accept-Encoding field of the request. The coding with the highest q-value wins; among equal
// ones the first in `preference` (the config's `algorithms`). "*" stands for every coding not
// listed, q=0 refuses, a coding listed twice takes its lower q-value, "x-gzip" is gzip,
// "identity" does not matter. Identity when no field, an empty one, or nothing in `preference`
// acceptable. Strict and bounded: an element that is not `token [OWS ";" OWS "q=" qvalue]`
// (qvalue 0, 0.5, 1.000: at most three decimals, not above 1) is skipped, never an error; only
// the first kMaxAcceptEncodingElements non-empty elements count. Allocates nothing.
Encoding choose_encoding(std::span<const std::string_view> accept_encoding_values,
                         std::span<const Encoding> preference);

struct CompressionRules {
  // Media types without parameters, matched case-insensitively; "text/*" (and "*/*") match a
  // whole top-level type.
  std::vector<std::string> types;
  uint64_t min_size = 1024;  // a body of known length below this is sent as it is
};

// Whether a response may be compressed (edge.md): a response with a body (not 1xx/204/206/304,
// not to HEAD), no Content-Encoding (or "identity"), a single Content-Type whose media type is
// listed, a length of at least min_size or unknown, and no "no-transform" in Cache-Control.
// Looks at the fields as they will be sent (the received ones after `head.edits`).
bool should_compress(const ResponseOut& head, http::Method request_method,
                     const CompressionRules& rules);

// The head of a response compressed with `e`: Content-Encoding set; Content-Length (the body is
// sent chunked / without a length), Accept-Ranges (ranges of the compressed bytes are not
// offered) and the digests of the uncompressed bytes (Content-Digest, Repr-Digest, Digest,
// Content-MD5) removed; Vary merged with Accept-Encoding (one Vary field; nothing changed if it
// lists Accept-Encoding or "*"); a strong ETag made weak (W/"..."), an invalid one removed.
// `edits` may be `head.edits`.
void edit_head_for_compression(const ResponseOut& head, Encoding e, HeaderEdits& edits);

// Vary merged with Accept-Encoding, and nothing else: for a response that could have been
// compressed but goes out as it is because this client accepts no coding weir offers (a cache
// on the way must not hand it to a client that does).
void add_vary_accept_encoding(const ResponseOut& head, HeaderEdits& edits);

struct CompressionLevels {
  int gzip = 5;  // 1-9
  int br = 4;    // 0-11
  int zstd = 3;  // 1-19
  int of(Encoding e) const;
};

// A streaming compressor of one response body, following the BodyFilter contract: output only
// into `out` (any free space, even one byte), `used` the input taken, `done` once `end` was given
// and the last byte is in `out`.
class Compressor : public BodyFilter {
 public:
  // Bytes held now / at most so far: the library's allocations plus this object.
  virtual size_t memory() const = 0;
  virtual size_t peak_memory() const = 0;
  // Allocations made by the library so far (the count, for tests of "no allocation per call").
  virtual size_t allocations() const = 0;
  // failed(): the library failed (out of memory): no more output and never `done`; the
  // exchange aborts the response (the stream cannot be completed).
};

// A compressor for `e` at `level` (clamped to the range above), or null for Identity or when
// the library cannot be set up (out of memory). `size_hint`: the body's length when known
// (Content-Length), 0 if not; only sizes the window and tables, any length still works.
// Make it before editing the head, so a null leaves the response as it was.
std::unique_ptr<Compressor> make_compressor(Encoding e, int level, uint64_t size_hint = 0);

// The filter a `compression:` key makes (compression_filter.cpp): on a response that may be
// compressed, the coding the request accepts best, the head edited for it and a compressor as
// the response's BodyFilter; Vary: Accept-Encoding alone when the client accepts none.
std::unique_ptr<Filter> make_compression_filter(const config::Compression& c);

}  // namespace weir::proxy
