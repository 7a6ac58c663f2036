// Body framing decoder. The chunked decoder is a byte-at-a-time state machine for the framing
// (so it resumes at any split) that hands chunk data out as one span per call, uncopied.
#include "http/body_decoder.hpp"

#include <algorithm>

#include "http/chars.hpp"

namespace weir::http {

void BodyDecoder::reset(BodyKind kind, uint64_t content_length, const ChunkLimits& limits) {
  kind_ = kind;
  limits_ = limits;
  remaining_ = 0;
  line_len_ = 0;
  trailer_len_ = 0;
  error_ = "";
  switch (kind) {
    case BodyKind::None:
      state_ = State::Finished;
      break;
    case BodyKind::ContentLength:
      remaining_ = content_length;
      state_ = content_length == 0 ? State::Finished : State::Data;
      break;
    case BodyKind::Chunked:
      state_ = State::SizeStart;
      break;
    case BodyKind::UntilClose:
      state_ = State::Data;
      break;
  }
}

bool BodyDecoder::done() const {
  return state_ == State::Finished;
}

bool BodyDecoder::finish_eof() {
  if (kind_ == BodyKind::UntilClose && state_ != State::Failed) state_ = State::Finished;
  return state_ == State::Finished;
}

void BodyDecoder::skip(uint64_t n) {
  if (kind_ != BodyKind::ContentLength || state_ == State::Finished) return;
  remaining_ -= std::min(n, remaining_);
  if (remaining_ == 0) state_ = State::Finished;
}

BodyDecoder::Step BodyDecoder::decode(std::string_view in) {
  Step step;
  if (state_ == State::Finished) {
    step.status = Status::Done;
    return step;
  }
  if (state_ == State::Failed) {
    step.status = Status::Error;
    step.error = error_;
    return step;
  }
  switch (kind_) {
    case BodyKind::ContentLength: {
      const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size()));
      remaining_ -= take;
      step.consumed = take;
      step.payload = in.substr(0, take);
      if (remaining_ == 0) {
        state_ = State::Finished;
        step.status = Status::Done;
      }
      return step;
    }
    case BodyKind::UntilClose:
      step.consumed = in.size();
      step.payload = in;
      return step;
    case BodyKind::Chunked:
      return decode_chunked(in);
    case BodyKind::None:
      break;
  }
  step.status = Status::Done;
  return step;
}

BodyDecoder::Step BodyDecoder::decode_chunked(std::string_view in) {
  Step step;
  size_t i = 0;
  // Trailer bytes of this call: those the limit counts, one run (nothing else follows them in
  // the section but its final CRLF).
  size_t trailer_at = 0, trailer_n = 0;
  auto fail = [&](const char* why) {
    state_ = State::Failed;
    error_ = why;
    step.status = Status::Error;
    step.consumed = i;
    step.error = why;
    return step;
  };
  for (; i < in.size(); ++i) {
    const char c = in[i];
    // Limits count the chunk-size line without its CRLF and the trailer fields with theirs
    // (the final empty line excluded), so a limit of N admits exactly N bytes.
    // The counters saturate: a limit above 4 GiB still ends a line that long.
    if (state_ <= State::Ext && c != '\r' &&
        (line_len_ == UINT32_MAX || ++line_len_ > limits_.max_chunk_line)) {
      return fail("chunk-size line too long");
    }
    if (state_ >= State::TrailerStart && state_ <= State::TrailerLF &&
        !(state_ == State::TrailerStart && c == '\r')) {
      if (trailer_len_ == UINT32_MAX || ++trailer_len_ > limits_.max_trailer_bytes)
        return fail("trailer section too large");
      if (trailer_n++ == 0) trailer_at = i;
    }
    switch (state_) {
      case State::SizeStart:
        if (!chars::is_hex(c)) return fail("invalid chunk size");
        remaining_ = 0;
        state_ = State::Size;
        [[fallthrough]];
      case State::Size:
        if (chars::is_hex(c)) {
          const uint64_t max = limits_.max_chunk_size;
          const auto digit = static_cast<uint64_t>(chars::hex_value(c));
          if (remaining_ > max / 16 || digit > max - remaining_ * 16) {
            return fail("chunk size too large");
          }
          remaining_ = remaining_ * 16 + digit;
        } else if (c == ';') {
          state_ = State::Ext;
        } else if (chars::is_ows(c)) {
          state_ = State::SizeBWS;
        } else if (c == '\r') {
          state_ = State::SizeLF;
        } else {
          return fail("invalid chunk size");
        }
        break;
      case State::SizeBWS:
        if (c == ';') {
          state_ = State::Ext;
        } else if (!chars::is_ows(c)) {
          return fail("invalid chunk size");
        }
        break;
      case State::Ext:
        // Loose on the grammar (nobody uses extensions), strict on the bytes: no CTLs, no LF.
        if (c == '\r') {
          state_ = State::SizeLF;
        } else if (!chars::is_field_value(c)) {
          return fail("invalid chunk extension");
        }
        break;
      case State::SizeLF:
        if (c != '\n') return fail("chunk-size line not ended by CRLF");
        if (remaining_ == 0) {
          state_ = State::TrailerStart;
          trailer_len_ = 0;
        } else {
          state_ = State::Data;
        }
        break;
      case State::Data: {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size() - i));
        step.payload = in.substr(i, take);
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::DataCR;
        step.consumed = i + take;
        return step;
      }
      case State::DataCR:
        if (c != '\r') return fail("chunk data not followed by CRLF");
        state_ = State::DataLF;
        break;
      case State::DataLF:
        if (c != '\n') return fail("chunk data not followed by CRLF");
        state_ = State::SizeStart;
        line_len_ = 0;
        break;
      case State::TrailerStart:
        if (c == '\r') {
          state_ = State::TrailerEndLF;
        } else if (chars::is_token(c)) {
          state_ = State::TrailerName;
        } else {
          return fail(chars::is_ows(c) ? "obs-fold in trailer" : "invalid trailer field name");
        }
        break;
      case State::TrailerName:
        if (c == ':') {
          state_ = State::TrailerValue;
        } else if (!chars::is_token(c)) {
          return fail("invalid trailer field name");
        }
        break;
      case State::TrailerValue:
        if (c == '\r') {
          state_ = State::TrailerLF;
        } else if (!chars::is_field_value(c)) {
          return fail("invalid trailer field value");
        }
        break;
      case State::TrailerLF:
        if (c != '\n') return fail("trailer line not ended by CRLF");
        state_ = State::TrailerStart;
        break;
      case State::TrailerEndLF:
        if (c != '\n') return fail("trailer section not ended by CRLF");
        state_ = State::Finished;
        step.status = Status::Done;
        step.consumed = i + 1;
        step.trailer = in.substr(trailer_at, trailer_n);
        return step;
      case State::Finished:
      case State::Failed:
        break;  // handled in decode()
    }
  }
  step.consumed = i;
  step.trailer = in.substr(trailer_at, trailer_n);
  return step;
}

}  // namespace weir::http
