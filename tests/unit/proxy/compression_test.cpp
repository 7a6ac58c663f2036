// Compression building blocks (proxy/compression.hpp): Accept-Encoding negotiation, the rules
// for compressing a response, the head edits, and the streaming compressors checked against the
// real decoders (zlib, brotli, zstd).
#include "proxy/compression.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <brotli/decode.h>
#include <zstd.h>

#include "core/buffer.hpp"
#include "http/parser.hpp"
#include "proxy/head_edits.hpp"

namespace weir::proxy {

// Parameterized test names and failure messages show "gzip" rather than a byte.
[[maybe_unused]] static void PrintTo(Encoding e, std::ostream* os) {
  *os << token(e);
}

namespace {

constexpr Encoding kAll[] = {Encoding::Zstd, Encoding::Brotli, Encoding::Gzip};

Encoding choose(std::vector<std::string_view> values,
                std::vector<Encoding> pref = {Encoding::Zstd, Encoding::Brotli, Encoding::Gzip}) {
  return choose_encoding(values, pref);
}

// ---------------------------------------------------------------------------------------------
// Accept-Encoding

TEST(AcceptEncoding, Tokens) {
  EXPECT_EQ(token(Encoding::Identity), "identity");
  EXPECT_EQ(token(Encoding::Gzip), "gzip");
  EXPECT_EQ(token(Encoding::Brotli), "br");
  EXPECT_EQ(token(Encoding::Zstd), "zstd");
  EXPECT_EQ(parse_encoding("gzip"), Encoding::Gzip);
  EXPECT_EQ(parse_encoding("BR"), Encoding::Brotli);
  EXPECT_EQ(parse_encoding("zstd"), Encoding::Zstd);
  EXPECT_EQ(parse_encoding("deflate"), std::nullopt);
  EXPECT_EQ(parse_encoding("identity"), std::nullopt);
  EXPECT_EQ(parse_encoding(""), std::nullopt);
  CompressionLevels levels;
  EXPECT_EQ(levels.of(Encoding::Gzip), 5);
  EXPECT_EQ(levels.of(Encoding::Brotli), 4);
  EXPECT_EQ(levels.of(Encoding::Zstd), 3);
}

TEST(AcceptEncoding, QValueTable) {
  const std::vector<Encoding> zbg = {Encoding::Zstd, Encoding::Brotli, Encoding::Gzip};
  const std::vector<Encoding> gbz = {Encoding::Gzip, Encoding::Brotli, Encoding::Zstd};
  struct Case {
    std::string_view value;
    std::vector<Encoding> pref;
    Encoding want;
  };
  const Case cases[] = {
      {"gzip", zbg, Encoding::Gzip},
      {"gzip, br", zbg, Encoding::Brotli},  // equal q: the server's order
      {"gzip, br", gbz, Encoding::Gzip},
      {"gzip, br, zstd", zbg, Encoding::Zstd},
      {"gzip;q=0, br", zbg, Encoding::Brotli},
      {"gzip;q=0", zbg, Encoding::Identity},
      {"br;q=0.5, gzip", zbg, Encoding::Gzip},  // q beats the server's order
      {"br;q=0.5, gzip;q=0.4", gbz, Encoding::Brotli},
      {"gzip;q=0.001, br;q=0", zbg, Encoding::Gzip},
      {"*", zbg, Encoding::Zstd},
      {"*", gbz, Encoding::Gzip},
      {"*;q=0.5, gzip;q=0", zbg, Encoding::Zstd},
      {"*;q=0.5, gzip;q=0", gbz, Encoding::Brotli},
      {"*;q=0.5, gzip", zbg, Encoding::Gzip},  // listed 1 beats * 0.5
      {"*;q=0", zbg, Encoding::Identity},
      {"*;q=0, br", zbg, Encoding::Brotli},
      {"identity", zbg, Encoding::Identity},
      {"identity;q=0", zbg, Encoding::Identity},  // nothing acceptable: identity all the same
      {"identity, gzip;q=0.2", zbg, Encoding::Gzip},
      {"deflate, compress", zbg, Encoding::Identity},
      {"x-gzip", zbg, Encoding::Gzip},
      {"x-gzip;q=0, gzip", zbg, Encoding::Identity},  // the same coding: the lower q
      {"gzip, gzip;q=0", zbg, Encoding::Identity},
      {"br;q=0.3, br;q=0.9, gzip;q=0.5", zbg, Encoding::Gzip},
      {"GZIP", zbg, Encoding::Gzip},
      {"Br;Q=1", zbg, Encoding::Brotli},
      {"ZStd;q=1.000", gbz, Encoding::Zstd},
      {"br;q=1.", zbg, Encoding::Brotli},
      {"br;q=0.", zbg, Encoding::Identity},
      {"br;q=1.0001", zbg, Encoding::Identity},  // four decimals: skipped
      {"br;q=1.0001, gzip", zbg, Encoding::Gzip},
      {"br;q=1.001", zbg, Encoding::Identity},  // above 1
      {"br;q=2", zbg, Encoding::Identity},
      {"br;q=.5", zbg, Encoding::Identity},
      {"br;q=-1", zbg, Encoding::Identity},
      {"br;q=0.5x", zbg, Encoding::Identity},
      {"br;q=", zbg, Encoding::Identity},
      {"br;q", zbg, Encoding::Identity},
      {"br;q =0.5", zbg, Encoding::Identity},
      {"br;q= 0.5", zbg, Encoding::Identity},
      {"br;q=\"0.5\"", zbg, Encoding::Identity},
      {"br;level=5", zbg, Encoding::Identity},  // no other parameters
      {"br;q=0.5;x=1", zbg, Encoding::Identity},
      {"br;", zbg, Encoding::Identity},
      {"br gzip", zbg, Encoding::Identity},
      {"br/gzip, gzip", zbg, Encoding::Gzip},
      {" \tgzip \t; \tq=0.5 \t, \tbr;q=0.4", zbg, Encoding::Gzip},  // OWS around ';' and ','
      {",,, ,gzip,,", zbg, Encoding::Gzip},
      {"", zbg, Encoding::Identity},
      {"gzip, br", {}, Encoding::Identity},  // nothing enabled
      {"gzip, br", {Encoding::Zstd}, Encoding::Identity},
      {"gzip, br", {Encoding::Identity, Encoding::Brotli}, Encoding::Brotli},
  };
  for (const Case& c : cases)
    EXPECT_EQ(choose({c.value}, c.pref), c.want) << '"' << c.value << '"';
}

TEST(AcceptEncoding, SeveralFieldsFormOneList) {
  EXPECT_EQ(choose({"gzip", "br"}), Encoding::Brotli);
  EXPECT_EQ(choose({"br;q=0.5", "gzip"}), Encoding::Gzip);
  EXPECT_EQ(choose({"*", "zstd;q=0"}), Encoding::Brotli);
  EXPECT_EQ(choose({"gzip", "gzip;q=0"}), Encoding::Identity);
  EXPECT_EQ(choose({"", "gzip"}), Encoding::Gzip);
  EXPECT_EQ(choose({"bogus;;", "br"}), Encoding::Brotli);
  EXPECT_EQ(choose({}), Encoding::Identity);  // no field
}

TEST(AcceptEncoding, BoundedNumberOfElements) {
  // 1000 elements: only the first kMaxAcceptEncodingElements count.
  std::string many;
  for (int i = 0; i < 1000; ++i)
    many += "x" + std::to_string(i) + ", ";
  EXPECT_EQ(choose({many + "gzip"}), Encoding::Identity);
  EXPECT_EQ(choose({"gzip, " + many}), Encoding::Gzip);

  // Exactly at the bound: the last element counts; one more does not. Empty elements don't count.
  std::string at;
  for (size_t i = 0; i + 1 < kMaxAcceptEncodingElements; ++i)
    at += "a, , ";
  EXPECT_EQ(choose({at + "br"}), Encoding::Brotli);
  EXPECT_EQ(choose({at + "a, br"}), Encoding::Identity);
  // The bound spans the fields.
  std::vector<std::string> fields(kMaxAcceptEncodingElements, "a");
  fields.push_back("br");
  std::vector<std::string_view> views(fields.begin(), fields.end());
  EXPECT_EQ(choose(views), Encoding::Identity);
  views.erase(views.begin());
  EXPECT_EQ(choose(views), Encoding::Brotli);
}

// ---------------------------------------------------------------------------------------------
// should_compress

const CompressionRules kRules{{"text/html", "text/css", "text/plain", "text/javascript",
                               "application/javascript", "application/json", "image/svg+xml"},
                              1024};

using FieldList = std::vector<std::pair<std::string_view, std::string_view>>;

// A response head as the exchange hands it to the filters.
struct Head {
  std::vector<http::Header> fields;
  HeaderEdits edits;
  ResponseOut out;

  Head(uint16_t status, FieldList f, http::BodyKind body = http::BodyKind::ContentLength,
       uint64_t length = 5000) {
    for (auto& [n, v] : f)
      fields.push_back({n, v});
    out.status = status;
    out.fields = fields;
    out.body = body;
    out.content_length = length;
    out.edits = &edits;
  }
  Head(const Head&) = delete;

  bool compress(http::Method m = http::Method::Get, const CompressionRules& r = kRules) const {
    return should_compress(out, m, r);
  }
  FieldList sent() const {
    FieldList f;
    out.for_each_field([&](std::string_view n, std::string_view v) { f.emplace_back(n, v); });
    return f;
  }
};

TEST(ShouldCompress, ListedTypeWithBody) {
  EXPECT_TRUE(Head(200, {{"Content-Type", "text/html"}}).compress());
  EXPECT_TRUE(Head(200, {{"content-type", "application/json"}}).compress());
  EXPECT_FALSE(Head(200, {{"Content-Type", "image/png"}}).compress());
  EXPECT_FALSE(Head(200, {{"Content-Type", "text/htmlx"}}).compress());
  EXPECT_FALSE(Head(200, {{"Content-Type", "text"}}).compress());
  EXPECT_FALSE(Head(200, {{"Content-Type", ""}}).compress());
  EXPECT_FALSE(Head(200, {}).compress());  // no Content-Type: not a listed type
  EXPECT_FALSE(
      Head(200, {{"Content-Type", "text/html"}, {"Content-Type", "text/html"}}).compress());
}

TEST(ShouldCompress, TypeCaseAndParameters) {
  EXPECT_TRUE(Head(200, {{"Content-Type", "TEXT/HTML"}}).compress());
  EXPECT_TRUE(Head(200, {{"Content-Type", "text/html; charset=utf-8"}}).compress());
  EXPECT_TRUE(Head(200, {{"Content-Type", "text/html;charset=utf-8"}}).compress());
  EXPECT_TRUE(Head(200, {{"Content-Type", "Application/JSON ; charset=\"utf-8\""}}).compress());
  EXPECT_FALSE(Head(200, {{"Content-Type", "image/png; name=text/html"}}).compress());
}

TEST(ShouldCompress, WildcardTypes) {
  const CompressionRules text{{"text/*", "application/json"}, 0};
  EXPECT_TRUE(Head(200, {{"Content-Type", "text/markdown"}}).compress(http::Method::Get, text));
  EXPECT_TRUE(
      Head(200, {{"Content-Type", "Text/CSV; header=present"}}).compress(http::Method::Get, text));
  EXPECT_FALSE(Head(200, {{"Content-Type", "texts/plain"}}).compress(http::Method::Get, text));
  EXPECT_FALSE(Head(200, {{"Content-Type", "text/"}}).compress(http::Method::Get, text));
  EXPECT_FALSE(Head(200, {{"Content-Type", "application/xml"}}).compress(http::Method::Get, text));
  const CompressionRules any{{"*/*"}, 0};
  EXPECT_TRUE(Head(200, {{"Content-Type", "font/woff2"}}).compress(http::Method::Get, any));
  EXPECT_FALSE(Head(200, {{"Content-Type", "nonsense"}}).compress(http::Method::Get, any));
}

TEST(ShouldCompress, NotWithContentEncoding) {
  EXPECT_FALSE(Head(200, {{"Content-Type", "text/html"}, {"Content-Encoding", "gzip"}}).compress());
  EXPECT_FALSE(Head(200, {{"Content-Type", "text/html"}, {"Content-Encoding", "br"}}).compress());
  EXPECT_FALSE(Head(200, {{"Content-Type", "text/html"}, {"Content-Encoding", "identity, gzip"}})
                   .compress());
  EXPECT_TRUE(
      Head(200, {{"Content-Type", "text/html"}, {"Content-Encoding", "identity"}}).compress());
  EXPECT_TRUE(Head(200, {{"Content-Type", "text/html"}, {"Content-Encoding", ""}}).compress());
  // A field a filter removed does not count; one it added does.
  Head removed(200, {{"Content-Type", "text/html"}, {"Content-Encoding", "gzip"}});
  removed.edits.remove("content-encoding");
  EXPECT_TRUE(removed.compress());
  Head added(200, {{"Content-Type", "text/html"}});
  added.edits.add("Content-Encoding", "zstd");
  EXPECT_FALSE(added.compress());
}

TEST(ShouldCompress, NotForStatusesWithoutARepresentation) {
  for (uint16_t status : {100, 101, 103, 204, 206, 304})
    EXPECT_FALSE(Head(status, {{"Content-Type", "text/html"}}).compress()) << status;
  for (uint16_t status : {200, 201, 203, 301, 404, 500, 503})
    EXPECT_TRUE(Head(status, {{"Content-Type", "text/html"}}).compress()) << status;
}

TEST(ShouldCompress, NotForHead) {
  EXPECT_FALSE(Head(200, {{"Content-Type", "text/html"}}).compress(http::Method::Head));
  EXPECT_TRUE(Head(200, {{"Content-Type", "text/html"}}).compress(http::Method::Post));
}

TEST(ShouldCompress, MinSizeWhenTheLengthIsKnown) {
  const FieldList html = {{"Content-Type", "text/html"}};
  EXPECT_FALSE(Head(200, html, http::BodyKind::ContentLength, 1023).compress());
  EXPECT_TRUE(Head(200, html, http::BodyKind::ContentLength, 1024).compress());
  EXPECT_TRUE(Head(200, html, http::BodyKind::Chunked, 0).compress());  // unknown length
  EXPECT_TRUE(Head(200, html, http::BodyKind::UntilClose, 0).compress());
  EXPECT_FALSE(Head(200, html, http::BodyKind::None, 0).compress());  // no body at all
  const CompressionRules zero{{"text/html"}, 0};
  EXPECT_TRUE(Head(200, html, http::BodyKind::ContentLength, 1).compress(http::Method::Get, zero));
}

TEST(ShouldCompress, NotWithNoTransform) {
  const std::string_view html = "text/html";
  EXPECT_FALSE(Head(200, {{"Content-Type", html}, {"Cache-Control", "no-transform"}}).compress());
  EXPECT_FALSE(
      Head(200, {{"Content-Type", html}, {"Cache-Control", "public, No-Transform"}}).compress());
  EXPECT_FALSE(Head(200, {{"Content-Type", html},
                          {"Cache-Control", "max-age=60"},
                          {"Cache-Control", "no-transform"}})
                   .compress());
  EXPECT_TRUE(
      Head(200, {{"Content-Type", html}, {"Cache-Control", "public, max-age=60"}}).compress());
  EXPECT_TRUE(Head(200, {{"Content-Type", html}, {"Cache-Control", "no-transformer"}}).compress());
  EXPECT_TRUE(Head(200, {{"Content-Type", html}, {"Cache-Control", "no-cache"}}).compress());
}

// ---------------------------------------------------------------------------------------------
// edit_head_for_compression

using Values = std::vector<std::string>;

FieldList edited(Head& h, Encoding e = Encoding::Gzip) {
  edit_head_for_compression(h.out, e, h.edits);
  return h.sent();
}

TEST(CompressionHead, EncodingSetLengthAndRangesGone) {
  Head h(200, {{"Content-Type", "text/html"},
               {"Content-Length", "5000"},
               {"Accept-Ranges", "bytes"},
               {"Content-Encoding", "identity"},
               {"Content-Digest", "sha-256=:x:"},
               {"X-Other", "1"}});
  EXPECT_EQ(edited(h, Encoding::Brotli), (FieldList{{"Content-Type", "text/html"},
                                                    {"X-Other", "1"},
                                                    {"Content-Encoding", "br"},
                                                    {"Vary", "Accept-Encoding"}}));
  Head z(200, {{"Content-Type", "text/html"}});
  EXPECT_EQ(edited(z, Encoding::Zstd), (FieldList{{"Content-Type", "text/html"},
                                                  {"Content-Encoding", "zstd"},
                                                  {"Vary", "Accept-Encoding"}}));
}

TEST(CompressionHead, VaryMerged) {
  // The values of the Vary fields sent (copies: the head goes away).
  auto vary_after = [](FieldList f) {
    Head h(200, std::move(f));
    Values out;
    for (auto& [n, v] : edited(h))
      if (http::iequals(n, "vary")) out.emplace_back(v);
    return out;
  };
  EXPECT_EQ(vary_after({}), (Values{"Accept-Encoding"}));
  EXPECT_EQ(vary_after({{"Vary", "Origin"}}), (Values{"Origin, Accept-Encoding"}));
  EXPECT_EQ(vary_after({{"Vary", "Origin"}, {"vary", "Cookie"}}),
            (Values{"Origin, Cookie, Accept-Encoding"}));
  EXPECT_EQ(vary_after({{"Vary", ""}}), (Values{"Accept-Encoding"}));
  // Already listed (any case) or "*": left as it was.
  EXPECT_EQ(vary_after({{"Vary", "accept-encoding"}}), (Values{"accept-encoding"}));
  EXPECT_EQ(vary_after({{"Vary", "Origin, Accept-Encoding"}}), (Values{"Origin, Accept-Encoding"}));
  EXPECT_EQ(vary_after({{"Vary", "Origin"}, {"Vary", "Accept-Encoding"}}),
            (Values{"Origin", "Accept-Encoding"}));
  EXPECT_EQ(vary_after({{"Vary", "*"}}), (Values{"*"}));
  EXPECT_EQ(vary_after({{"Vary", "Origin, *"}}), (Values{"Origin, *"}));
  EXPECT_EQ(vary_after({{"Vary", "Accept-Encodings"}}),
            (Values{"Accept-Encodings, Accept-Encoding"}));
}

TEST(CompressionHead, VaryAddedByAFilterIsMerged) {
  // The value lives in the same edits the merge writes to.
  Head h(200, {{"Content-Type", "text/html"}});
  h.edits.add("Vary", "Origin, User-Agent, Cookie, Authorization, X-Long-Enough-To-Move");
  EXPECT_EQ(edited(h), (FieldList{{"Content-Type", "text/html"},
                                  {"Content-Encoding", "gzip"},
                                  {"Vary",
                                   "Origin, User-Agent, Cookie, Authorization, "
                                   "X-Long-Enough-To-Move, Accept-Encoding"}}));
}

TEST(CompressionHead, StrongETagMadeWeak) {
  // The values of the ETag fields sent (copies: the head goes away).
  auto etag_after = [](FieldList f) {
    Head h(200, std::move(f));
    Values out;
    for (auto& [n, v] : edited(h))
      if (http::iequals(n, "etag")) out.emplace_back(v);
    return out;
  };
  EXPECT_EQ(etag_after({{"ETag", "\"abc\""}}), (Values{"W/\"abc\""}));
  EXPECT_EQ(etag_after({{"ETag", "\"\""}}), (Values{"W/\"\""}));
  EXPECT_EQ(etag_after({{"ETag", "W/\"abc\""}}), (Values{"W/\"abc\""}));  // stays
  EXPECT_EQ(etag_after({}), Values{});
  // Not an entity-tag, or several: removed (a strong validator must not survive unchanged).
  EXPECT_EQ(etag_after({{"ETag", "abc"}}), Values{});
  EXPECT_EQ(etag_after({{"ETag", "\"a\"b\""}}), Values{});
  EXPECT_EQ(etag_after({{"ETag", "w/\"abc\""}}), Values{});
  EXPECT_EQ(etag_after({{"ETag", "\"a b\""}}), Values{});
  EXPECT_EQ(etag_after({{"ETag", "\"a\x01\""}}), Values{});
  EXPECT_EQ(etag_after({{"ETag", "\"caf\xc3\xa9\""}}), (Values{"W/\"caf\xc3\xa9\""}));  // obs-text
  EXPECT_EQ(etag_after({{"ETag", "\"a\""}, {"ETag", "\"b\""}}), Values{});
  // A weak ETag stays where it was.
  Head h(200, {{"ETag", "W/\"x\""}, {"Content-Type", "text/html"}});
  EXPECT_EQ(edited(h).front(), (std::pair<std::string_view, std::string_view>{"ETag", "W/\"x\""}));
}

TEST(CompressionHead, ETagAddedByAFilter) {
  Head h(200, {{"Content-Type", "text/html"}});
  h.edits.add("ETag", "\"a-strong-tag-long-enough-to-leave-small-string-storage\"");
  FieldList f = edited(h);
  EXPECT_EQ(f.back(), (std::pair<std::string_view, std::string_view>{
                          "ETag", "W/\"a-strong-tag-long-enough-to-leave-small-string-storage\""}));
}

// ---------------------------------------------------------------------------------------------
// Compressors: round trips through the real decoders

// A streaming decoder of one coding.
class Decoder {
 public:
  explicit Decoder(Encoding e) : e_(e) {
    switch (e_) {
      case Encoding::Gzip:
        ok_ = inflateInit2(&z_, 15 + 16) == Z_OK;
        break;
      case Encoding::Brotli:
        br_ = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
        ok_ = br_ != nullptr;
        break;
      case Encoding::Zstd:
        zs_ = ZSTD_createDStream();
        ok_ = zs_ != nullptr;
        break;
      case Encoding::Identity:
        ok_ = false;
    }
  }
  ~Decoder() {
    if (e_ == Encoding::Gzip) inflateEnd(&z_);
    if (br_) BrotliDecoderDestroyInstance(br_);
    if (zs_) ZSTD_freeDStream(zs_);
  }
  Decoder(const Decoder&) = delete;

  // Decodes `in`, appending to `out`. False once the stream is corrupt or has bytes after its
  // end.
  bool feed(std::string_view in, std::string& out) {
    bool full = false;  // the last step filled its output buffer: there may be more
    while (ok_ && (!in.empty() || (full && !finished_))) {
      if (finished_) return ok_ = false;
      char buf[4096];
      size_t used = 0;
      size_t made = 0;
      switch (e_) {
        case Encoding::Gzip: {
          z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
          z_.avail_in = static_cast<uInt>(in.size());
          z_.next_out = reinterpret_cast<Bytef*>(buf);
          z_.avail_out = sizeof buf;
          int rc = inflate(&z_, Z_NO_FLUSH);
          if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) return ok_ = false;
          finished_ = rc == Z_STREAM_END;
          used = in.size() - z_.avail_in;
          made = sizeof buf - z_.avail_out;
          break;
        }
        case Encoding::Brotli: {
          size_t avail_in = in.size();
          const uint8_t* next_in = reinterpret_cast<const uint8_t*>(in.data());
          size_t avail_out = sizeof buf;
          uint8_t* next_out = reinterpret_cast<uint8_t*>(buf);
          auto rc = BrotliDecoderDecompressStream(br_, &avail_in, &next_in, &avail_out, &next_out,
                                                  nullptr);
          if (rc == BROTLI_DECODER_RESULT_ERROR) return ok_ = false;
          finished_ = rc == BROTLI_DECODER_RESULT_SUCCESS;
          used = in.size() - avail_in;
          made = sizeof buf - avail_out;
          break;
        }
        case Encoding::Zstd: {
          ZSTD_inBuffer zin{in.data(), in.size(), 0};
          ZSTD_outBuffer zout{buf, sizeof buf, 0};
          size_t rc = ZSTD_decompressStream(zs_, &zout, &zin);
          if (ZSTD_isError(rc)) return ok_ = false;
          finished_ = rc == 0;
          used = zin.pos;
          made = zout.pos;
          break;
        }
        case Encoding::Identity:
          return false;
      }
      out.append(buf, made);
      in.remove_prefix(used);
      full = made == sizeof buf;
      if (used == 0 && made == 0) break;
    }
    return ok_;
  }
  bool finished() const { return ok_ && finished_; }

 private:
  Encoding e_;
  z_stream z_{};
  BrotliDecoderState* br_ = nullptr;
  ZSTD_DStream* zs_ = nullptr;
  bool ok_ = false;
  bool finished_ = false;
};

std::string text_body(size_t size, uint64_t seed) {
  static constexpr std::string_view kWords[] = {
      "the ",  "quick ", "brown ", "fox ", "<div class=\"item\">",   "</div>\n", "jumps ",
      "over ", "lazy ",  "dog ",   "42, ", "{\"key\": \"value\"}, ", "\t",       "weir "};
  std::mt19937_64 rng(seed);
  std::string s;
  while (s.size() < size) {
    s += kWords[rng() % std::size(kWords)];
    if (rng() % 40 == 0)
      for (int i = 0; i < 12; ++i)
        s.push_back(static_cast<char>('a' + rng() % 26));
  }
  s.resize(size);
  return s;
}

std::string random_body(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(size, '\0');
  for (char& c : s)
    c = static_cast<char>(rng());
  return s;
}

// Drives a compressor as the exchange does and checks the BodyFilter contract on every call:
// input arrives in pieces (sizes from `piece`) and accumulates while unused; every call is
// offered all of it; `out` has `room()` bytes free (its free space split around unread bytes, so
// the tail may be shorter than the free space). After every call that used all it was offered,
// the output so far must decode to exactly the input so far (the flush policy).
struct Pump {
  Compressor& c;
  Encoding e;
  std::mt19937_64 rng;
  std::function<size_t()> piece;
  std::function<size_t()> room;
  Buffer out{16 * 1024};
  Decoder dec{e};
  std::string decoded;
  size_t compressed = 0;
  size_t calls = 0;

  // One on_body call with `free` bytes of room; the output goes to the decoder.
  BodyFilter::Step call(std::string_view in, bool end, size_t free) {
    out.clear();
    const size_t junk = out.capacity() - free;
    const size_t gap = rng() % (free + 1);
    out.append(std::string(junk + gap, 'J'));
    out.consume(gap);
    EXPECT_EQ(out.free_space(), free);
    const BodyFilter::Step s = c.on_body(in, end, out);
    ++calls;
    std::string_view got = out.readable();
    EXPECT_GE(got.size(), junk);
    EXPECT_EQ(got.substr(0, junk), std::string(junk, 'J'));
    got.remove_prefix(junk);
    EXPECT_LE(s.used, in.size());
    EXPECT_TRUE(!s.done || end) << "done before end";
    EXPECT_TRUE(dec.feed(got, decoded)) << "the output does not decode";
    compressed += got.size();
    const bool progress = s.used > 0 || !got.empty() || s.done;
    if (!in.empty() || end) {
      EXPECT_TRUE(progress) << "a call with room made no progress";
    }
    return s;
  }

  // Runs `input` through, then the end.
  void run(std::string_view input) {
    size_t pos = 0;      // used so far
    size_t arrived = 0;  // offered so far
    while (pos < input.size()) {
      if (arrived == pos || rng() % 3 == 0)
        arrived = std::min(input.size(), arrived + std::max<size_t>(1, piece()));
      const BodyFilter::Step s = call(input.substr(pos, arrived - pos), false, room());
      pos += s.used;
      if (::testing::Test::HasFailure()) return;
      if (pos == arrived) {
        ASSERT_EQ(decoded.size(), pos) << "flushed output short after all input was used";
        ASSERT_TRUE(decoded == input.substr(0, pos));
        // Nothing is left in the compressor: a call without input makes no output.
        ASSERT_FALSE(call({}, false, room()).done);
        ASSERT_EQ(decoded.size(), pos);
      }
    }
    for (int i = 0;; ++i) {
      ASSERT_LT(i, 1'000'000) << "never done";
      if (call({}, true, room()).done) break;
      if (::testing::Test::HasFailure()) return;
    }
    EXPECT_TRUE(dec.finished()) << "stream not ended";
    EXPECT_TRUE(decoded == input) << "round trip differs";
    EXPECT_FALSE(c.failed());
  }
};

size_t skewed(std::mt19937_64& rng, size_t max) {
  switch (rng() % 3) {
    case 0:
      return 1 + rng() % 16;
    case 1:
      return 1 + rng() % 2048;
    default:
      return 1 + rng() % max;
  }
}

class CompressorRoundTrip : public ::testing::TestWithParam<Encoding> {};

TEST_P(CompressorRoundTrip, RandomPiecesAndRoom) {
  const Encoding e = GetParam();
  const std::string bodies[] = {"", "x", text_body(300'000, 1), random_body(200'000, 2),
                                text_body(70'000, 3) + random_body(70'000, 4)};
  uint64_t seed = 10;
  for (const std::string& body : bodies) {
    for (int round = 0; round < 2; ++round) {
      auto c = make_compressor(e, CompressionLevels{}.of(e));
      ASSERT_TRUE(c);
      std::mt19937_64 rng(++seed);
      Pump p{*c, e, std::mt19937_64(seed * 7), [&] { return skewed(rng, 64 * 1024); },
             [&] { return skewed(rng, 16 * 1024); }};
      p.run(body);
      ASSERT_FALSE(HasFailure()) << "body " << body.size() << " bytes, round " << round;
    }
  }
}

TEST_P(CompressorRoundTrip, OneByteOfRoomAtATime) {
  const Encoding e = GetParam();
  const std::string body = text_body(6000, 5) + random_body(500, 6);
  auto c = make_compressor(e, CompressionLevels{}.of(e));
  ASSERT_TRUE(c);
  std::mt19937_64 rng(7);
  Pump p{*c, e, std::mt19937_64(8), [&] { return 1 + rng() % 3000; }, [] { return size_t{1}; }};
  p.run(body);
  EXPECT_GE(p.calls, p.compressed);  // every output byte took its own call
}

TEST_P(CompressorRoundTrip, EmptyBody) {
  const Encoding e = GetParam();
  auto c = make_compressor(e, CompressionLevels{}.of(e));
  ASSERT_TRUE(c);
  Pump p{*c, e, std::mt19937_64(1), [] { return size_t{1}; }, [] { return size_t{16 * 1024}; }};
  // A call without input before anything else makes nothing.
  EXPECT_FALSE(p.call({}, false, 16 * 1024).done);
  EXPECT_EQ(p.compressed, 0u);
  p.run("");
  EXPECT_GT(p.compressed, 0u);  // a valid, empty stream
}

TEST_P(CompressorRoundTrip, EveryLevelAndClamping) {
  const Encoding e = GetParam();
  const std::string body = text_body(50'000, 9);
  for (int level = -3; level <= 25; ++level) {
    auto c = make_compressor(e, level);
    ASSERT_TRUE(c) << level;
    std::mt19937_64 rng(level + 100);
    Pump p{*c, e, std::mt19937_64(level + 200), [&] { return skewed(rng, 20'000); },
           [&] { return skewed(rng, 16 * 1024); }};
    p.run(body);
    ASSERT_FALSE(HasFailure()) << "level " << level;
  }
}

TEST_P(CompressorRoundTrip, SizeHintIsOnlyAHint) {
  const Encoding e = GetParam();
  const std::string body = text_body(100'000, 11);
  for (uint64_t hint : {uint64_t{1}, uint64_t{2000}, uint64_t{100'000}, uint64_t{1} << 40}) {
    auto c = make_compressor(e, CompressionLevels{}.of(e), hint);
    ASSERT_TRUE(c);
    std::mt19937_64 rng(hint);
    Pump p{*c, e, std::mt19937_64(hint + 1), [&] { return skewed(rng, 64 * 1024); },
           [&] { return skewed(rng, 16 * 1024); }};
    p.run(body);
    ASSERT_FALSE(HasFailure()) << "hint " << hint;
  }
}

// Streamed responses (server-sent events): each event is decodable as soon as it is used.
TEST_P(CompressorRoundTrip, EachPieceDecodableAtOnce) {
  const Encoding e = GetParam();
  for (size_t room : {size_t{16 * 1024}, size_t{3}}) {
    auto c = make_compressor(e, CompressionLevels{}.of(e));
    ASSERT_TRUE(c);
    Pump p{*c, e, std::mt19937_64(3), [] { return size_t{1}; }, [=] { return room; }};
    std::string sent;
    for (int i = 0; i < 50; ++i) {
      const std::string event = "data: {\"tick\": " + std::to_string(i) + "}\n\n";
      sent += event;
      std::string_view rest = event;
      while (!rest.empty()) {
        auto s = p.call(rest, false, room);
        rest.remove_prefix(s.used);
        ASSERT_FALSE(HasFailure());
      }
      ASSERT_EQ(p.decoded, sent) << "event " << i << " held back, room " << room;
    }
  }
}

// Fed all of a 1 KB random piece with 8 bytes of room, the compressor holds back its last byte
// until the flush is out: the exchange calls again only while input is left.
TEST_P(CompressorRoundTrip, IncompleteFlushHoldsTheLastByte) {
  const Encoding e = GetParam();
  auto c = make_compressor(e, CompressionLevels{}.of(e));
  ASSERT_TRUE(c);
  Pump p{*c, e, std::mt19937_64(3), [] { return size_t{1}; }, [] { return size_t{8}; }};
  const std::string piece = random_body(1000, 12);
  std::string_view rest = piece;
  size_t calls_with_one_byte = 0;
  while (!rest.empty()) {
    auto s = p.call(rest, false, 8);
    if (rest.size() == 1 && s.used == 0) ++calls_with_one_byte;
    rest.remove_prefix(s.used);
    ASSERT_FALSE(HasFailure());
  }
  EXPECT_GT(calls_with_one_byte, 0u);
  EXPECT_EQ(p.decoded, piece);
}

INSTANTIATE_TEST_SUITE_P(All, CompressorRoundTrip, ::testing::ValuesIn(kAll),
                         [](const auto& info) { return std::string(token(info.param)); });

TEST(Compressor, NoneForIdentity) {
  EXPECT_EQ(make_compressor(Encoding::Identity, 5), nullptr);
}

// ---------------------------------------------------------------------------------------------
// Memory

// The bounds stated in compression.hpp (library allocations + the object).
size_t bound_at_default(Encoding e) {
  switch (e) {
    case Encoding::Gzip:
      return 263 * 1024;
    case Encoding::Brotli:
      return 1400 * 1024;
    case Encoding::Zstd:
      return 2048 * 1024;
    case Encoding::Identity:
      break;
  }
  return 0;
}

class CompressorMemory : public ::testing::TestWithParam<Encoding> {};

// 64 MiB of zeros in 16 KiB pieces (1000:1 and more): the output stays in `out`, the
// compressor's own memory under its bound, and gzip and zstd allocate nothing after construction.
TEST_P(CompressorMemory, BoundedOnAHugelyCompressibleBody) {
  const Encoding e = GetParam();
  auto c = make_compressor(e, CompressionLevels{}.of(e));
  ASSERT_TRUE(c);
  const size_t allocs_at_start = c->allocations();
  const std::string zeros(16 * 1024, '\0');
  const size_t total = 64u << 20;
  Buffer out(16 * 1024);
  Decoder dec(e);
  std::string decoded;
  size_t decoded_total = 0;
  size_t compressed = 0;
  auto take = [&] {
    compressed += out.size();
    ASSERT_TRUE(dec.feed(out.readable(), decoded));
    out.clear();
    decoded_total += decoded.size();
    for (size_t i = 0; i < decoded.size(); i += zeros.size())
      ASSERT_EQ(
          std::memcmp(decoded.data() + i, zeros.data(), std::min(zeros.size(), decoded.size() - i)),
          0);
    decoded.clear();
  };
  for (size_t fed = 0; fed < total; fed += zeros.size()) {
    std::string_view rest = zeros;
    while (!rest.empty()) {
      auto s = c->on_body(rest, false, out);
      rest.remove_prefix(s.used);
      take();
      ASSERT_FALSE(HasFailure());
    }
  }
  while (!c->on_body({}, true, out).done)
    take();
  take();
  EXPECT_TRUE(dec.finished());
  EXPECT_EQ(decoded_total, total);
  EXPECT_LT(compressed, total / 300) << "flushed every 16 KiB, still far below the input";
  EXPECT_LE(c->peak_memory(), bound_at_default(e)) << "peak " << c->peak_memory();
  EXPECT_GT(c->peak_memory(), 0u);
  if (e != Encoding::Brotli) {
    EXPECT_EQ(c->allocations(), allocs_at_start) << "allocated while streaming";
  }
  EXPECT_LE(c->memory(), c->peak_memory());
  std::printf("  %s: peak %zu bytes, %zu bytes out\n", std::string(token(e)).c_str(),
              c->peak_memory(), compressed);
}

// Large pieces handed in at once (4 MiB of text in one call) stay under the same bound: brotli
// must not switch to its bigger hasher for big inputs.
TEST_P(CompressorMemory, BoundedWithBigPieces) {
  const Encoding e = GetParam();
  auto c = make_compressor(e, CompressionLevels{}.of(e));
  ASSERT_TRUE(c);
  const std::string body = text_body(4u << 20, 13);
  Pump p{*c, e, std::mt19937_64(1), [&] { return body.size(); }, [] { return size_t{16 * 1024}; }};
  p.run(body);
  EXPECT_LE(c->peak_memory(), bound_at_default(e)) << "peak " << c->peak_memory();
  std::printf("  %s: peak %zu bytes\n", std::string(token(e)).c_str(), c->peak_memory());
}

// A known small length shrinks the window and tables.
TEST_P(CompressorMemory, SmallWhenTheLengthIsKnown) {
  const Encoding e = GetParam();
  auto c = make_compressor(e, CompressionLevels{}.of(e), 2000);
  ASSERT_TRUE(c);
  Pump p{*c, e, std::mt19937_64(1), [] { return size_t{700}; }, [] { return size_t{16 * 1024}; }};
  p.run(text_body(2000, 14));
  const size_t limit = e == Encoding::Brotli ? 800 * 1024 : 96 * 1024;
  EXPECT_LE(c->peak_memory(), limit) << "peak " << c->peak_memory();
  std::printf("  %s: peak %zu bytes\n", std::string(token(e)).c_str(), c->peak_memory());
}

INSTANTIATE_TEST_SUITE_P(All, CompressorMemory, ::testing::ValuesIn(kAll),
                         [](const auto& info) { return std::string(token(info.param)); });

// The peak at every level (unknown length, 512 KiB of text), against the table in compression.hpp.
TEST(Compressor, PeakMemoryPerLevel) {
  const std::string body = text_body(512u << 10, 15);
  struct Limit {
    Encoding e;
    int from;
    int to;
    size_t bytes;
  };
  const Limit limits[] = {
      {Encoding::Gzip, 1, 9, 263 * 1024},      {Encoding::Brotli, 0, 1, 200 * 1024},
      {Encoding::Brotli, 2, 4, 1400 * 1024},   {Encoding::Brotli, 5, 5, 1950 * 1024},
      {Encoding::Brotli, 6, 6, 3000 * 1024},   {Encoding::Brotli, 7, 9, 34 * 1024 * 1024},
      {Encoding::Brotli, 10, 11, 4500 * 1024}, {Encoding::Zstd, 1, 2, 1536 * 1024},
      {Encoding::Zstd, 3, 3, 2048 * 1024},     {Encoding::Zstd, 4, 19, 4200 * 1024},
  };
  for (const Limit& l : limits) {
    for (int level = l.from; level <= l.to; ++level) {
      auto c = make_compressor(l.e, level);
      ASSERT_TRUE(c);
      Buffer out(16 * 1024);
      for (size_t pos = 0; pos < body.size();) {
        auto s = c->on_body(std::string_view(body).substr(pos, 16 * 1024), false, out);
        pos += s.used;
        out.clear();
      }
      while (!c->on_body({}, true, out).done)
        out.clear();
      EXPECT_LE(c->peak_memory(), l.bytes) << token(l.e) << " level " << level;
      std::printf("  %-4s level %2d: peak %8zu bytes\n", std::string(token(l.e)).c_str(), level,
                  c->peak_memory());
    }
  }
}

}  // namespace
}  // namespace weir::proxy
