// Fuzzes the chunked decoder: decoding the input in one piece, byte by byte and cut at
// pseudo-random points must give the same payload, the same trailer section, the same verdict
// and the same consumed count.
#include <cstdint>
#include <string>

#include "fuzz_util.hpp"
#include "http/body_decoder.hpp"

using namespace weir::http;
using weir::fuzz::Buffer;
using weir::fuzz::Rng;

namespace {

struct Outcome {
  BodyDecoder::Status status = BodyDecoder::Status::Continue;
  std::string payload;
  std::string trailer;  // the trailer spans, appended
  size_t consumed = 0;
  bool done = false;
};

// Feeds input in pieces of at most `max_piece` bytes (0: random sizes from rng).
Outcome run(std::string_view input, const ChunkLimits& limits, size_t max_piece, Rng rng) {
  BodyDecoder d;
  d.reset(BodyKind::Chunked, 0, limits);
  Outcome out;
  size_t pos = 0;
  while (pos < input.size()) {
    size_t len = max_piece != 0 ? max_piece : 1 + rng.next() % 64;
    len = std::min(len, input.size() - pos);
    const Buffer piece(input.substr(pos, len));
    std::string_view rest = piece.view();
    pos += len;
    while (!rest.empty()) {
      const BodyDecoder::Step step = d.decode(rest);
      FUZZ_CHECK(step.consumed <= rest.size());
      if (!step.payload.empty()) {
        FUZZ_CHECK(weir::fuzz::inside(step.payload, rest.substr(0, step.consumed)));
      }
      if (!step.trailer.empty()) {
        FUZZ_CHECK(weir::fuzz::inside(step.trailer, rest.substr(0, step.consumed)));
        FUZZ_CHECK(step.payload.empty());
      }
      out.payload.append(step.payload);
      out.trailer.append(step.trailer);
      FUZZ_CHECK(out.trailer.size() <= limits.max_trailer_bytes);
      out.consumed += step.consumed;
      rest.remove_prefix(step.consumed);
      out.status = step.status;
      if (step.status == BodyDecoder::Status::Error) {
        FUZZ_CHECK(step.error != nullptr && step.error[0] != '\0');
        FUZZ_CHECK(!d.done());
      }
      if (step.status != BodyDecoder::Status::Continue) {
        out.done = d.done();
        return out;
      }
      FUZZ_CHECK(step.consumed > 0);  // progress whenever input is offered
    }
  }
  out.done = d.done();
  FUZZ_CHECK(!out.done);
  return out;
}

void check(std::string_view input, const ChunkLimits& limits) {
  const Outcome whole = run(input, limits, input.size() + 1, Rng{1});
  const Outcome bytes = run(input, limits, 1, Rng{1});
  const Outcome random = run(input, limits, 0, Rng{0x9e3779b97f4a7c15ull ^ input.size()});
  for (const Outcome* o : {&bytes, &random}) {
    FUZZ_CHECK(o->status == whole.status);
    FUZZ_CHECK(o->consumed == whole.consumed);
    FUZZ_CHECK(o->payload == whole.payload);
    FUZZ_CHECK(o->done == whole.done);
    if (whole.status != BodyDecoder::Status::Error) FUZZ_CHECK(o->trailer == whole.trailer);
  }
  if (whole.status == BodyDecoder::Status::Done) {
    // The body alone decodes the same; one byte less is not done.
    const Outcome exact = run(input.substr(0, whole.consumed), limits, 0, Rng{7});
    FUZZ_CHECK(exact.status == BodyDecoder::Status::Done && exact.payload == whole.payload);
    FUZZ_CHECK(exact.trailer == whole.trailer);
    const Outcome shorter = run(input.substr(0, whole.consumed - 1), limits, 0, Rng{7});
    FUZZ_CHECK(shorter.status == BodyDecoder::Status::Continue);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check(input, ChunkLimits{});
  ChunkLimits small;
  small.max_chunk_line = 12;
  small.max_trailer_bytes = 40;
  small.max_chunk_size = 0x400;
  check(input, small);
  return 0;
}
