// Fuzzes the compression negotiation (proxy/compression.hpp). Input: one selector byte (the
// server's preference: which codings, in which order), then Accept-Encoding field values, one per
// line. choose_encoding must pick from the preference or identity, and agree with itself when the
// fields are joined into one, the input is upper-cased, or its pick is put first / taken away.
// The same lines, as response fields, go through should_compress and edit_head_for_compression,
// whose result must be a consistent compressed head.
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "http/parser.hpp"
#include "proxy/compression.hpp"
#include "proxy/head_edits.hpp"

using weir::proxy::Encoding;

namespace {

constexpr size_t kMaxFields = 16;

std::vector<Encoding> preference_of(uint8_t selector) {
  static constexpr std::array<std::array<Encoding, 3>, 6> kOrders = {{
      {Encoding::Zstd, Encoding::Brotli, Encoding::Gzip},
      {Encoding::Zstd, Encoding::Gzip, Encoding::Brotli},
      {Encoding::Brotli, Encoding::Zstd, Encoding::Gzip},
      {Encoding::Brotli, Encoding::Gzip, Encoding::Zstd},
      {Encoding::Gzip, Encoding::Zstd, Encoding::Brotli},
      {Encoding::Gzip, Encoding::Brotli, Encoding::Zstd},
  }};
  const auto& order = kOrders[(selector & 0x7) % kOrders.size()];
  std::vector<Encoding> pref;
  for (size_t i = 0; i < order.size(); ++i)
    if ((selector & (0x8 << i)) == 0) pref.push_back(order[i]);  // mostly all three
  return pref;
}

Encoding choose(const std::vector<std::string>& values, const std::vector<Encoding>& pref) {
  std::vector<std::string_view> views(values.begin(), values.end());
  return weir::proxy::choose_encoding(views, pref);
}

std::string upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return s;
}

void check_negotiation(const std::vector<std::string>& values, const std::vector<Encoding>& pref) {
  const Encoding r = choose(values, pref);
  FUZZ_CHECK(r == Encoding::Identity || std::find(pref.begin(), pref.end(), r) != pref.end());
  FUZZ_CHECK(choose(values, pref) == r);

  // Several fields are one list.
  std::string joined;
  for (size_t i = 0; i < values.size(); ++i)
    joined += (i ? "," : "") + values[i];
  FUZZ_CHECK(choose(std::vector<std::string>{joined}, pref) == r);

  // Codings and "q" are case-insensitive.
  std::vector<std::string> shouted;
  for (const std::string& v : values)
    shouted.push_back(upper(v));
  FUZZ_CHECK(choose(shouted, pref) == r);

  // Nothing acceptable among all three: nothing among fewer.
  const std::vector<Encoding> all = {Encoding::Zstd, Encoding::Brotli, Encoding::Gzip};
  if (choose(values, all) == Encoding::Identity) FUZZ_CHECK(r == Encoding::Identity);

  if (r != Encoding::Identity) {
    // The pick has the highest q: first in the preference, it still wins; gone, another does.
    std::vector<Encoding> first = {r};
    std::vector<Encoding> without;
    for (Encoding e : pref)
      if (e != r) {
        first.push_back(e);
        without.push_back(e);
      }
    FUZZ_CHECK(choose(values, first) == r);
    FUZZ_CHECK(choose(values, without) != r);
  }
}

// The lines as response fields (names by line number), through the head rules and edits.
void check_head(const std::vector<std::string>& values, Encoding e) {
  static constexpr std::string_view kNames[] = {
      "Vary",           "ETag",          "Content-Type", "Cache-Control", "Content-Encoding",
      "Content-Length", "Accept-Ranges", "vary"};
  std::vector<weir::http::Header> fields;
  for (size_t i = 0; i < values.size(); ++i)
    fields.push_back({kNames[i % std::size(kNames)], values[i]});
  weir::proxy::HeaderEdits edits;
  if (values.size() > 2) edits.add("Vary", values[2]);  // an earlier filter's field
  if (values.size() > 3) edits.add("ETag", values[3]);
  weir::proxy::ResponseOut head;
  head.fields = fields;
  head.body = weir::http::BodyKind::Chunked;
  head.edits = &edits;

  const weir::proxy::CompressionRules rules{{"text/*", "application/json"}, 0};
  (void)weir::proxy::should_compress(head, weir::http::Method::Get, rules);

  if (e == Encoding::Identity) e = Encoding::Gzip;
  weir::proxy::edit_head_for_compression(head, e, edits);
  size_t encodings = 0;
  bool varies = false;
  head.for_each_field([&](std::string_view name, std::string_view value) {
    FUZZ_CHECK(!weir::http::iequals(name, "content-length"));
    FUZZ_CHECK(!weir::http::iequals(name, "accept-ranges"));
    if (weir::http::iequals(name, "content-encoding")) {
      ++encodings;
      FUZZ_CHECK(value == weir::proxy::token(e));
    }
    if (weir::http::iequals(name, "etag")) FUZZ_CHECK(value.starts_with("W/\""));
    if (weir::http::iequals(name, "vary"))
      varies |= weir::http::list_contains(value, "accept-encoding") ||
                weir::http::list_contains(value, "*");
  });
  FUZZ_CHECK(encodings == 1);
  FUZZ_CHECK(varies);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::vector<Encoding> pref = preference_of(data[0]);
  const weir::fuzz::Buffer copy(
      std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  std::string_view rest = copy.view();
  std::vector<std::string> values;
  while (values.size() < kMaxFields) {
    const size_t nl = rest.find('\n');
    values.emplace_back(rest.substr(0, nl));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  check_negotiation(values, pref);
  check_head(values, choose(values, pref));
  return 0;
}
