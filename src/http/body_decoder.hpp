#pragma once
// Incremental body framing decoder: Content-Length, chunked (RFC 9112 §7.1) or until-close.
// Feed it whatever bytes arrived; each call consumes some input and yields at most one span of
// payload (pointing into the input), so the caller can forward payload without copying.
// Resumable across any split of the input, including inside a chunk-size line or trailer.
// Trailer fields are checked and handed out as spans too (Step::trailer), for the caller to keep.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "http/parser.hpp"

namespace weir::http {

struct ChunkLimits {
  size_t max_chunk_line = 4096;  // chunk-size line including extensions
  size_t max_trailer_bytes = 16 * 1024;
  uint64_t max_chunk_size = (uint64_t{1} << 40);  // larger chunk-size → error
};

class BodyDecoder {
 public:
  enum class Status : uint8_t { Continue, Done, Error };
  struct Step {
    Status status = Status::Continue;
    size_t consumed = 0;       // input bytes used by this step (framing + payload)
    std::string_view payload;  // payload bytes in this step, a subrange of the input (may be empty)
    // Chunked: bytes of the trailer section consumed in this step, a subrange of the input:
    // whole or partial field lines with their CRLF, never the final empty line. Appended in
    // order they rebuild the section (at most max_trailer_bytes); the decoder keeps none of it.
    std::string_view trailer;
    const char* error = "";  // Error: what went wrong
  };

  void reset(BodyKind kind, uint64_t content_length, const ChunkLimits& limits = {});
  // Decode from `in`. Call again with the remaining input while status is Continue and
  // consumed > 0. For UntilClose, call finish_eof() when the peer closes.
  Step decode(std::string_view in);
  bool done() const;
  // The peer closed: true if that is a valid end of the body (UntilClose, or already done).
  bool finish_eof();
  // Payload that went around the decoder (spliced from socket to socket): Content-Length and
  // until-close bodies only, where payload and framing are the same bytes. At most remaining().
  void skip(uint64_t n);
  BodyKind kind() const { return kind_; }
  uint64_t remaining() const { return remaining_; }  // ContentLength: payload bytes left

 private:
  enum class State : uint8_t {
    SizeStart,  // first hex digit of a chunk-size
    Size,       // more hex digits, or what follows them
    SizeBWS,    // whitespace after the size: only ";" may follow
    Ext,        // chunk extensions, up to CR
    SizeLF,     // LF ending the chunk-size line
    Data,       // remaining_ bytes of chunk data (or of the whole Content-Length body)
    DataCR,     // CRLF after chunk data
    DataLF,
    TrailerStart,  // start of a trailer line (or of the final empty line)
    TrailerName,
    TrailerValue,
    TrailerLF,     // LF ending a trailer field line
    TrailerEndLF,  // LF ending the trailer section
    Finished,
    Failed,
  };
  Step decode_chunked(std::string_view in);

  // 56 bytes: a connection holds one (H1Connection stays within its 448-byte slab class).
  BodyKind kind_ = BodyKind::None;
  State state_ = State::Finished;
  uint32_t line_len_ = 0;  // bytes of the current chunk-size line, CRLF excluded
  uint64_t remaining_ = 0;
  uint32_t trailer_len_ = 0;  // bytes of the trailer section so far
  const char* error_ = "";
  ChunkLimits limits_;
};

}  // namespace weir::http
