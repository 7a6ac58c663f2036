// Fuzzes the cache's header parsing and decisions (cache/cache_control.hpp, cache/freshness.hpp,
// cache/vary.hpp). Input: one selector byte (times and the status), then lines, each one field
// value; line i becomes a field named kNames[i % n] of a response, and the same lines are also
// parsed as request Cache-Control, CDN-Cache-Control, Vary and Location values. Checks: nothing
// crashes or reads out of bounds; every parsed number is within 2^31; directive names are
// case-insensitive (upper-casing the input changes no directive); ages and lifetimes stay in
// [0, 2^31]; a decision never serves stale what must-revalidate & co. forbid; a 304 merge never
// takes a framing field from the 304; invalidation targets stay on the request's origin.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cache/cache_control.hpp"
#include "cache/freshness.hpp"
#include "cache/vary.hpp"
#include "fuzz_util.hpp"

namespace cache = weir::cache;
using cache::Field;

namespace {

constexpr size_t kMaxLines = 24;
constexpr int64_t kMax = cache::kMaxDeltaSeconds;

constexpr std::string_view kNames[] = {"Cache-Control", "CDN-Cache-Control",
                                       "Date",          "Expires",
                                       "Last-Modified", "Age",
                                       "ETag",          "Vary",
                                       "cache-control", "Content-Length",
                                       "Connection",    "Content-Encoding"};

std::string upper(std::string_view s) {
  std::string u(s);
  for (char& c : u)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return u;
}

bool same(const cache::Seconds& a, const cache::Seconds& b) {
  return a.state == b.state && a.value == b.value;
}

void check_seconds(const cache::Seconds& s) {
  FUZZ_CHECK(s.value <= kMax);
  if (!s.valid()) FUZZ_CHECK(s.value == 0);
}

void check_response_directives(const cache::ResponseDirectives& d) {
  FUZZ_CHECK(d.count <= cache::kMaxDirectives);
  for (const cache::Seconds* s :
       {&d.max_age, &d.s_maxage, &d.stale_while_revalidate, &d.stale_if_error})
    check_seconds(*s);
  if (d.no_cache_fields) FUZZ_CHECK(d.no_cache);
  if (d.private_fields) FUZZ_CHECK(d.private_);
}

bool same_flags(const cache::ResponseDirectives& a, const cache::ResponseDirectives& b) {
  return same(a.max_age, b.max_age) && same(a.s_maxage, b.s_maxage) &&
         same(a.stale_while_revalidate, b.stale_while_revalidate) &&
         same(a.stale_if_error, b.stale_if_error) && a.no_cache == b.no_cache &&
         a.no_cache_fields == b.no_cache_fields && a.no_store == b.no_store &&
         a.private_ == b.private_ && a.private_fields == b.private_fields &&
         a.public_ == b.public_ && a.must_revalidate == b.must_revalidate &&
         a.proxy_revalidate == b.proxy_revalidate && a.must_understand == b.must_understand &&
         a.no_transform == b.no_transform && a.immutable == b.immutable &&
         a.truncated == b.truncated && a.count == b.count;
}

void check_parsers(const std::vector<std::string_view>& values) {
  const cache::ResponseDirectives d = cache::parse_response_cache_control(values);
  check_response_directives(d);
  FUZZ_CHECK(same_flags(d, cache::parse_response_cache_control(values)));

  // Cache-Control names are case-insensitive, and nothing else upper-casing touches matters.
  std::vector<std::string> shouted;
  for (std::string_view v : values)
    shouted.push_back(upper(v));
  const std::vector<std::string_view> shouted_views(shouted.begin(), shouted.end());
  FUZZ_CHECK(same_flags(d, cache::parse_response_cache_control(shouted_views)));

  const cache::RequestDirectives r = cache::parse_request_cache_control(values);
  FUZZ_CHECK(r.count <= cache::kMaxDirectives);
  for (const cache::Seconds* s : {&r.max_age, &r.max_stale, &r.min_fresh, &r.stale_if_error})
    check_seconds(*s);

  const cache::TargetedDirectives t = cache::parse_cdn_cache_control(values);
  if (t.valid)
    check_response_directives(t.directives);
  else
    FUZZ_CHECK(t.directives.count == 0);
}

void check_decisions(const std::vector<std::string_view>& values, uint8_t selector) {
  std::vector<Field> fields;
  for (size_t i = 0; i < values.size(); ++i)
    fields.push_back({kNames[i % std::size(kNames)], values[i]});
  static constexpr uint16_t kStatuses[] = {200, 203, 206, 301, 302, 304, 404, 500, 299, 100};
  const uint16_t status = kStatuses[selector % std::size(kStatuses)];
  const int64_t request_time = 1'700'000'000 + (selector & 0x30);
  const int64_t response_time = request_time + (selector >> 6);
  const cache::ResponseFacts f = cache::response_facts(status, fields, request_time, response_time);
  check_response_directives(f.cc);
  if (f.targeted) FUZZ_CHECK(!f.has_expires);

  const cache::RequestFacts req = cache::request_facts(weir::http::Method::Get, fields);
  const cache::Storable st = cache::storable(req, f);
  FUZZ_CHECK(!cache::to_string(st).empty());
  if (st == cache::Storable::Yes) {
    FUZZ_CHECK(!f.cc.private_ && !f.cc.truncated && status != 206 && status != 304);
  }
  const cache::Lifetime l = cache::freshness_lifetime(f);
  FUZZ_CHECK(l.seconds >= 0 && l.seconds <= kMax);
  if (l.heuristic) FUZZ_CHECK(l.seconds <= cache::kDefaultHeuristicCap);

  for (int64_t later : {int64_t{0}, int64_t{1}, int64_t{59}, int64_t{3600}, int64_t{1} << 40}) {
    const int64_t now = response_time + later;
    const int64_t age = cache::current_age(f, now);
    FUZZ_CHECK(age >= 0 && age <= kMax);
    const cache::ServeDecision d = cache::decide(req.cc, f, now);
    FUZZ_CHECK(d.age == age && d.lifetime == l.seconds);
    FUZZ_CHECK(d.staleness >= 0 && d.staleness <= kMax);
    FUZZ_CHECK(!cache::to_string(d.serve).empty());
    if (d.serve == cache::Serve::Fresh) FUZZ_CHECK(age < l.seconds);
    const bool forbid =
        f.cc.must_revalidate || f.cc.proxy_revalidate || f.cc.s_maxage.present() || f.cc.no_cache;
    if (forbid) {
      FUZZ_CHECK(d.serve != cache::Serve::Stale);
      FUZZ_CHECK(d.serve != cache::Serve::StaleWhileRevalidate);
      FUZZ_CHECK(!d.stale_if_error);
    }
    if (req.cc.only_if_cached) FUZZ_CHECK(d.serve != cache::Serve::Revalidate);
  }

  // 304 merge: the stored fields are the first half, the 304's the second.
  const size_t half = fields.size() / 2;
  const std::span<const Field> stored(fields.data(), half);
  const std::span<const Field> update(fields.data() + half, fields.size() - half);
  std::vector<Field> merged;
  cache::merge_304_fields(stored, update, merged);
  FUZZ_CHECK(merged.size() <= fields.size());
  // A Content-Length or Content-Encoding of the 304 never makes it into the stored fields.
  for (const Field& u : update) {
    if (!weir::http::iequals(u.name, "content-length") &&
        !weir::http::iequals(u.name, "content-encoding"))
      continue;
    for (const Field& m : merged)
      FUZZ_CHECK(m.value.data() != u.value.data() || m.name.data() != u.name.data());
  }
  std::vector<Field> kept;
  cache::fields_to_store(fields, kept);
  FUZZ_CHECK(kept.size() <= fields.size());

  // Vary and the secondary key.
  std::string names;
  const cache::VaryKind vk = cache::parse_vary(fields, names);
  if (vk != cache::VaryKind::Names) FUZZ_CHECK(names.empty());
  std::string key;
  if (cache::secondary_key(names, fields, key)) FUZZ_CHECK(key.size() <= cache::kMaxSecondaryKey);

  // Invalidation stays on the origin.
  const std::string_view origin = "https://example.com";
  for (size_t i = 0; i + 1 < values.size() && i < 6; i += 2) {
    const cache::InvalidationTargets t =
        cache::invalidation_targets(origin, "/a/b?c", values[i], values[i + 1]);
    FUZZ_CHECK(t.count >= 1 && t.count <= 3);
    for (size_t k = 0; k < t.count; ++k) {
      FUZZ_CHECK(std::string_view(t.uris[k]).starts_with(origin));
      FUZZ_CHECK(t.uris[k].size() > origin.size() && t.uris[k][origin.size()] == '/');
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  const weir::fuzz::Buffer copy(
      std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  std::string_view rest = copy.view();
  std::vector<std::string_view> values;
  while (values.size() < kMaxLines) {
    const size_t nl = rest.find('\n');
    values.push_back(rest.substr(0, nl));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  check_parsers(values);
  check_decisions(values, selector);
  return 0;
}
