#include "http/body_decoder.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace weir::http {
namespace {

using Status = BodyDecoder::Status;
using namespace std::string_literals;

struct Outcome {
  Status status = Status::Continue;
  std::string payload;
  std::string trailer;  // the trailer section, rebuilt from the steps' spans
  size_t consumed = 0;  // total input bytes consumed
  std::string error;
};

// Feeds `input` cut into pieces of the given sizes (the last piece takes the rest), the way a
// connection would: each piece is a fresh exact-size buffer, decoded until it is used up.
Outcome decode_pieces(BodyDecoder& d, std::string_view input, const std::vector<size_t>& cuts) {
  Outcome out;
  size_t pos = 0;
  for (size_t k = 0; k <= cuts.size() && pos <= input.size(); ++k) {
    const size_t len = k < cuts.size() ? std::min(cuts[k], input.size() - pos) : input.size() - pos;
    auto buf = std::make_unique<char[]>(len);
    std::copy_n(input.data() + pos, len, buf.get());
    std::string_view rest(buf.get(), len);
    pos += len;
    while (!rest.empty()) {
      const BodyDecoder::Step step = d.decode(rest);
      EXPECT_LE(step.consumed, rest.size());
      if (!step.payload.empty()) {
        EXPECT_GE(step.payload.data(), rest.data());
        EXPECT_LE(step.payload.data() + step.payload.size(), rest.data() + step.consumed);
      }
      if (!step.trailer.empty()) {
        EXPECT_GE(step.trailer.data(), rest.data());
        EXPECT_LE(step.trailer.data() + step.trailer.size(), rest.data() + step.consumed);
        EXPECT_TRUE(step.payload.empty());
      }
      out.payload.append(step.payload);
      out.trailer.append(step.trailer);
      out.consumed += step.consumed;
      rest.remove_prefix(step.consumed);
      out.status = step.status;
      if (step.status == Status::Error) out.error = step.error;
      if (step.status != Status::Continue) return out;
      if (step.consumed == 0) break;
    }
    if (len == 0 && k >= cuts.size()) break;
  }
  if (d.done()) out.status = Status::Done;
  return out;
}

Outcome decode_whole(BodyDecoder& d, std::string_view input) {
  return decode_pieces(d, input, {});
}

Outcome decode_bytewise(BodyDecoder& d, std::string_view input) {
  return decode_pieces(d, input, std::vector<size_t>(input.size(), 1));
}

Outcome chunked(std::string_view input, const ChunkLimits& limits = {}) {
  BodyDecoder d;
  d.reset(BodyKind::Chunked, 0, limits);
  return decode_whole(d, input);
}

const std::string kChunked =
    "5;name=value;quoted=\"a b;c\"\r\nhello\r\n"
    "1A ; ext\r\n"
    "abcdefghijklmnopqrstuvwxyz\r\n"
    "000c\r\n hello world\r\n"
    "0;last\r\n"
    "Expires: never\r\n"
    "X-Checksum:\tabc \r\n"
    "\r\n";
const std::string kChunkedPayload = "helloabcdefghijklmnopqrstuvwxyz hello world";

TEST(BodyDecoder, ChunkedWithExtensionsAndTrailers) {
  BodyDecoder d;
  d.reset(BodyKind::Chunked, 0);
  const Outcome whole = decode_whole(d, kChunked + "GET / HTTP/1.1\r\n");
  EXPECT_EQ(whole.status, Status::Done);
  EXPECT_EQ(whole.payload, kChunkedPayload);
  EXPECT_EQ(whole.consumed, kChunked.size());  // stops right before the next request
  EXPECT_TRUE(d.done());
  EXPECT_TRUE(d.finish_eof());
}

TEST(BodyDecoder, ChunkedByteByByteMatchesWhole) {
  BodyDecoder d;
  d.reset(BodyKind::Chunked, 0);
  const Outcome bytes = decode_bytewise(d, kChunked);
  EXPECT_EQ(bytes.status, Status::Done);
  EXPECT_EQ(bytes.payload, kChunkedPayload);
  EXPECT_EQ(bytes.consumed, kChunked.size());
}

TEST(BodyDecoder, ChunkedEverySplitMatchesWhole) {
  for (size_t cut = 0; cut <= kChunked.size(); ++cut) {
    SCOPED_TRACE(cut);
    BodyDecoder d;
    d.reset(BodyKind::Chunked, 0);
    const Outcome o = decode_pieces(d, kChunked, {cut});
    EXPECT_EQ(o.status, Status::Done);
    EXPECT_EQ(o.payload, kChunkedPayload);
    EXPECT_EQ(o.consumed, kChunked.size());
  }
}

// The hot path copies the decoder per call (a probe, committed or dropped).
static_assert(std::is_trivially_copyable_v<BodyDecoder>);

const std::string kChunkedTrailer = "Expires: never\r\nX-Checksum:\tabc \r\n";

TEST(BodyDecoder, TrailerSectionIsHandedOut) {
  BodyDecoder d;
  d.reset(BodyKind::Chunked, 0);
  Outcome o = decode_whole(d, kChunked + "GET / HTTP/1.1\r\n");
  EXPECT_EQ(o.status, Status::Done);
  EXPECT_EQ(o.trailer, kChunkedTrailer);
  d.reset(BodyKind::Chunked, 0);
  o = decode_bytewise(d, kChunked);
  EXPECT_EQ(o.trailer, kChunkedTrailer);
  EXPECT_EQ(chunked("3\r\nabc\r\n0\r\n\r\n").trailer, "");
  EXPECT_EQ(chunked("0\r\nA: 1\r\n\r\n").trailer, "A: 1\r\n");
  EXPECT_EQ(chunked("0\r\nA:\r\nB: 2\r\n\r\n").trailer, "A:\r\nB: 2\r\n");
}

TEST(BodyDecoder, TrailerSplitAtEveryPairOfBoundaries) {
  for (size_t a = 0; a <= kChunked.size(); ++a) {
    for (size_t b = 0; a + b <= kChunked.size(); ++b) {
      SCOPED_TRACE(testing::Message() << a << "+" << b);
      BodyDecoder d;
      d.reset(BodyKind::Chunked, 0);
      const Outcome o = decode_pieces(d, kChunked, {a, b});
      ASSERT_EQ(o.status, Status::Done);
      ASSERT_EQ(o.payload, kChunkedPayload);
      ASSERT_EQ(o.trailer, kChunkedTrailer);
      ASSERT_EQ(o.consumed, kChunked.size());
    }
  }
}

// The caller keeps only what it commits: a probe's trailer bytes are dropped with the probe.
TEST(BodyDecoder, TrailerOfAProbeThatIsDropped) {
  BodyDecoder d;
  d.reset(BodyKind::Chunked, 0);
  std::string kept;
  const std::string in = "2\r\nhi\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
  std::string_view rest = in;
  while (!d.done()) {
    BodyDecoder probe = d;
    BodyDecoder::Step st = probe.decode(rest.substr(0, 7));
    ASSERT_NE(st.status, Status::Error);
    BodyDecoder::Step again = d.decode(rest.substr(0, 7));  // the commit
    ASSERT_GT(again.consumed, 0u);
    EXPECT_EQ(again.trailer, st.trailer);
    kept.append(again.trailer);
    rest.remove_prefix(again.consumed);
  }
  EXPECT_EQ(kept, "X-A: 1\r\nX-B: 2\r\n");
}

TEST(BodyDecoder, TrailerLimit) {
  // The default: 16 KiB of field lines (their CRLF included) pass, one byte more does not.
  const std::string name = "X-Big: ";
  const std::string exact(16 * 1024 - name.size() - 2, 'v');
  const Outcome ok = chunked("0\r\n" + name + exact + "\r\n\r\n");
  EXPECT_EQ(ok.status, Status::Done);
  EXPECT_EQ(ok.trailer.size(), 16u * 1024);
  const Outcome over = chunked("0\r\n" + name + exact + "v\r\n\r\n");
  EXPECT_EQ(over.status, Status::Error);
  EXPECT_EQ(over.error, "trailer section too large");
  EXPECT_LE(over.trailer.size(), 16u * 1024);
  // Many small lines count the same way, split anywhere.
  std::string lines;
  while (lines.size() + 8 <= 16 * 1024)
    lines += "A: 1234\r\n";
  for (size_t cut : {size_t{1}, size_t{7}, size_t{4096}}) {
    BodyDecoder d;
    d.reset(BodyKind::Chunked, 0);
    const Outcome o = decode_pieces(d, "0\r\n" + lines + "\r\n", std::vector<size_t>(64, cut));
    EXPECT_EQ(o.status, Status::Done);
    EXPECT_EQ(o.trailer, lines);
  }
}

TEST(BodyDecoder, ChunkedMinimalAndHexCase) {
  Outcome o = chunked("0\r\n\r\n");
  EXPECT_EQ(o.status, Status::Done);
  EXPECT_EQ(o.payload, "");
  EXPECT_EQ(o.consumed, 5u);
  o = chunked("a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n");
  EXPECT_EQ(o.status, Status::Done);
  EXPECT_EQ(o.payload, "01234567890123456789");
}

TEST(BodyDecoder, ChunkedNeedsMoreUntilTheEnd) {
  for (size_t len = 0; len < kChunked.size(); ++len) {
    BodyDecoder d;
    d.reset(BodyKind::Chunked, 0);
    const Outcome o = decode_whole(d, std::string_view(kChunked).substr(0, len));
    ASSERT_EQ(o.status, Status::Continue) << len;
    ASSERT_EQ(o.consumed, len);
    EXPECT_FALSE(d.done());
    EXPECT_FALSE(d.finish_eof());
  }
}

TEST(BodyDecoder, ChunkedMalformed) {
  ChunkLimits small;
  small.max_chunk_size = 0x100;
  small.max_chunk_line = 16;
  small.max_trailer_bytes = 16;
  const std::pair<const char*, std::string> cases[] = {
      {"bad_hex", "g\r\n"},
      {"bad_hex_after_digit", "5g\r\nhello\r\n0\r\n\r\n"},
      {"empty_size", "\r\nhello\r\n0\r\n\r\n"},
      {"negative", "-5\r\nhello\r\n0\r\n\r\n"},
      {"hex_prefix", "0x10\r\n0123456789abcdef\r\n0\r\n\r\n"},
      {"plus", "+5\r\nhello\r\n0\r\n\r\n"},
      {"leading_space", " 5\r\nhello\r\n0\r\n\r\n"},
      {"trailing_space_no_ext", "5 \r\nhello\r\n0\r\n\r\n"},
      {"bare_lf_size_line", "5\nhello\r\n0\r\n\r\n"},
      {"bare_cr_size_line", "5\rhello\r\n0\r\n\r\n"},
      {"missing_crlf_after_data", "5\r\nhelloX\r\n0\r\n\r\n"},
      {"data_longer_than_size", "3\r\nhello\r\n0\r\n\r\n"},
      {"bare_lf_after_data", "5\r\nhello\n0\r\n\r\n"},
      {"cr_without_lf_after_data", "5\r\nhello\r0\r\n\r\n"},
      {"oversize_chunk", "101\r\n"},
      {"overflow_64_bits", "10000000000000000\r\n"},
      {"many_digits", "fffffffffffffffffffffffffff\r\n"},
      {"too_long_ext_line", "5;aaaaaaaaaaaaaaaaaaaaa\r\nhello\r\n0\r\n\r\n"},
      {"nul_in_ext", "5;a\0b\r\nhello\r\n0\r\n\r\n"s},
      {"lf_in_ext", "5;a\nb\r\nhello\r\n0\r\n\r\n"},
      {"ctl_in_ext", "5;a\x01\r\nhello\r\n0\r\n\r\n"},
      {"trailer_too_long", "0\r\nX: aaaaaaaaaaaaaaaa\r\n\r\n"},
      {"trailer_obs_fold", "0\r\nX: a\r\n b\r\n\r\n"},
      {"trailer_no_colon", "0\r\nX a\r\n\r\n"},
      {"trailer_empty_name", "0\r\n: a\r\n\r\n"},
      {"trailer_nul", "0\r\nX: a\0\r\n\r\n"s},
      {"trailer_bare_lf", "0\r\nX: a\n\r\n"},
      {"trailer_bare_cr", "0\r\nX: a\rb\r\n\r\n"},
      {"end_bare_lf", "0\r\n\n"},
      {"end_cr_x", "0\r\n\rX"},
  };
  for (const auto& [name, input] : cases) {
    SCOPED_TRACE(name);
    BodyDecoder d;
    d.reset(BodyKind::Chunked, 0, small);
    const Outcome whole = decode_whole(d, input);
    EXPECT_EQ(whole.status, Status::Error);
    EXPECT_NE(whole.error, "");
    EXPECT_FALSE(d.done());
    EXPECT_FALSE(d.finish_eof());
    // Errors stick.
    EXPECT_EQ(d.decode("0\r\n\r\n").status, Status::Error);
    BodyDecoder b;
    b.reset(BodyKind::Chunked, 0, small);
    const Outcome bytes = decode_bytewise(b, input);
    EXPECT_EQ(bytes.status, Status::Error);
    EXPECT_EQ(bytes.payload, whole.payload);
    EXPECT_EQ(bytes.consumed, whole.consumed);
  }
}

TEST(BodyDecoder, ChunkLimitsAtTheBoundary) {
  ChunkLimits limits;
  limits.max_chunk_size = 0x10;
  limits.max_chunk_line = 8;
  limits.max_trailer_bytes = 10;
  // chunk-size == max passes, max + 1 fails.
  EXPECT_EQ(chunked("10\r\n" + std::string(16, 'x') + "\r\n0\r\n\r\n", limits).status,
            Status::Done);
  EXPECT_EQ(chunked("11\r\n", limits).status, Status::Error);
  // A size line of exactly max_chunk_line bytes (CRLF excluded) passes.
  EXPECT_EQ(chunked("1;abcdef\r\nx\r\n0\r\n\r\n", limits).status, Status::Done);
  EXPECT_EQ(chunked("1;abcdefg\r\nx\r\n0\r\n\r\n", limits).status, Status::Error);
  EXPECT_EQ(chunked("00000001\r\nx\r\n0\r\n\r\n", limits).status, Status::Done);
  EXPECT_EQ(chunked("000000001\r\nx\r\n0\r\n\r\n", limits).status, Status::Error);
  // Trailer fields of exactly max_trailer_bytes (with their CRLF) pass.
  EXPECT_EQ(chunked("0\r\nX: abcde\r\n\r\n", limits).status, Status::Done);
  EXPECT_EQ(chunked("0\r\nX: abcdef\r\n\r\n", limits).status, Status::Error);
  EXPECT_EQ(chunked("0\r\nA: 1\r\nB: 2\r\n\r\n", limits).status, Status::Error);
  // The default max_chunk_size (2^40) allows 1 TiB chunks but not more.
  BodyDecoder d;
  d.reset(BodyKind::Chunked, 0);
  BodyDecoder::Step s = d.decode("10000000000\r\nabc");
  EXPECT_EQ(s.status, Status::Continue);
  d.reset(BodyKind::Chunked, 0);
  s = d.decode("10000000001\r\n");
  EXPECT_EQ(s.status, Status::Error);
}

TEST(BodyDecoder, ContentLengthExact) {
  BodyDecoder d;
  d.reset(BodyKind::ContentLength, 5);
  EXPECT_EQ(d.remaining(), 5u);
  EXPECT_FALSE(d.done());
  BodyDecoder::Step s = d.decode("hel");
  EXPECT_EQ(s.status, Status::Continue);
  EXPECT_EQ(s.consumed, 3u);
  EXPECT_EQ(s.payload, "hel");
  EXPECT_EQ(d.remaining(), 2u);
  EXPECT_FALSE(d.finish_eof());  // a close before the end truncates the body
  s = d.decode("loGET /");
  EXPECT_EQ(s.status, Status::Done);
  EXPECT_EQ(s.consumed, 2u);
  EXPECT_EQ(s.payload, "lo");
  EXPECT_TRUE(d.done());
  EXPECT_TRUE(d.finish_eof());
  s = d.decode("more");
  EXPECT_EQ(s.status, Status::Done);
  EXPECT_EQ(s.consumed, 0u);
}

TEST(BodyDecoder, ContentLengthByteByByte) {
  BodyDecoder d;
  d.reset(BodyKind::ContentLength, 11);
  const Outcome o = decode_bytewise(d, "hello worldEXTRA");
  EXPECT_EQ(o.status, Status::Done);
  EXPECT_EQ(o.payload, "hello world");
  EXPECT_EQ(o.consumed, 11u);
}

TEST(BodyDecoder, NoBodyIsDoneAtOnce) {
  BodyDecoder d;
  d.reset(BodyKind::None, 0);
  EXPECT_TRUE(d.done());
  const BodyDecoder::Step s = d.decode("GET / HTTP/1.1\r\n");
  EXPECT_EQ(s.status, Status::Done);
  EXPECT_EQ(s.consumed, 0u);
  EXPECT_TRUE(d.finish_eof());
  d.reset(BodyKind::ContentLength, 0);
  EXPECT_TRUE(d.done());
  EXPECT_EQ(d.decode("x").status, Status::Done);
}

TEST(BodyDecoder, UntilClose) {
  BodyDecoder d;
  d.reset(BodyKind::UntilClose, 0);
  BodyDecoder::Step s = d.decode("anything\r\n0\r\n\r\n");
  EXPECT_EQ(s.status, Status::Continue);
  EXPECT_EQ(s.consumed, 15u);
  EXPECT_EQ(s.payload, "anything\r\n0\r\n\r\n");
  EXPECT_FALSE(d.done());
  s = d.decode("");
  EXPECT_EQ(s.status, Status::Continue);
  EXPECT_EQ(s.consumed, 0u);
  EXPECT_TRUE(d.finish_eof());
  EXPECT_TRUE(d.done());
  EXPECT_EQ(d.decode("late").status, Status::Done);
}

TEST(BodyDecoder, ChunkedEofBeforeEndIsNotValid) {
  BodyDecoder d;
  d.reset(BodyKind::Chunked, 0);
  const BodyDecoder::Step s = d.decode("5\r\nhel");
  EXPECT_EQ(s.payload, "hel");
  EXPECT_FALSE(d.finish_eof());
}

TEST(BodyDecoder, ResetReusesTheDecoder) {
  BodyDecoder d;
  d.reset(BodyKind::Chunked, 0);
  EXPECT_EQ(decode_whole(d, "zz").status, Status::Error);
  d.reset(BodyKind::Chunked, 0);
  const Outcome o = decode_whole(d, "3\r\nabc\r\n0\r\n\r\n");
  EXPECT_EQ(o.status, Status::Done);
  EXPECT_EQ(o.payload, "abc");
}

}  // namespace
}  // namespace weir::http
