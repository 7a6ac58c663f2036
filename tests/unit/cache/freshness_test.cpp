// The cache's RFC 9111 / RFC 5861 / RFC 9213 decisions (cache/freshness.hpp).
#include "cache/freshness.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "http/date.hpp"

namespace weir::cache {
namespace {

using http::Method;

constexpr int64_t kT = 1'700'000'000;  // response time in these tests

std::string date(int64_t t) {
  std::string s;
  http::format_http_date(t, s);
  return s;
}

ResponseFacts facts(uint16_t status, std::vector<Field> fields, int64_t request_time = kT,
                    int64_t response_time = kT) {
  return response_facts(status, fields, request_time, response_time);
}

RequestFacts get(std::vector<Field> fields = {}) {
  return request_facts(Method::Get, fields);
}

RequestDirectives rd(std::string_view cc) {
  std::vector<std::string_view> v{cc};
  return parse_request_cache_control(v);
}

// RFC 9111 3: only GET responses with a final status are stored here.
TEST(Storable, MethodAndStatus_3) {
  const auto f = facts(200, {{"cache-control", "max-age=60"}});
  EXPECT_EQ(storable(get(), f), Storable::Yes);
  EXPECT_EQ(storable(request_facts(Method::Head, {}), f), Storable::NotGet);
  EXPECT_EQ(storable(request_facts(Method::Post, {}), f), Storable::NotGet);
  EXPECT_EQ(storable(get(), facts(100, {{"cache-control", "max-age=60"}})), Storable::Status);
  EXPECT_EQ(storable(get(), facts(304, {{"cache-control", "max-age=60"}})), Storable::Status);
  // 206 is heuristically cacheable, but partial content is not stored by this cache.
  EXPECT_EQ(storable(get(), facts(206, {{"cache-control", "max-age=60"}})), Storable::Status);
}

// RFC 9111 3 / RFC 9110 15.1: without explicit freshness, only heuristically cacheable codes.
TEST(Storable, HeuristicallyCacheable_RFC9110_15_1) {
  for (uint16_t s : {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}) {
    EXPECT_TRUE(heuristically_cacheable(s)) << s;
    EXPECT_EQ(storable(get(), facts(s, {})), Storable::Yes) << s;
  }
  for (uint16_t s : {201, 302, 303, 307, 400, 403, 500, 502, 503}) {
    EXPECT_FALSE(heuristically_cacheable(s)) << s;
    EXPECT_EQ(storable(get(), facts(s, {})), Storable::NotCacheable) << s;
    // ... unless explicitly cacheable.
    EXPECT_EQ(storable(get(), facts(s, {{"cache-control", "max-age=5"}})), Storable::Yes) << s;
    EXPECT_EQ(storable(get(), facts(s, {{"cache-control", "s-maxage=5"}})), Storable::Yes);
    EXPECT_EQ(storable(get(), facts(s, {{"cache-control", "public"}})), Storable::Yes);
    EXPECT_EQ(storable(get(), facts(s, {{"expires", date(kT + 60)}})), Storable::Yes);
    // An invalid Expires still "contains an Expires field" (stored, stale).
    EXPECT_EQ(storable(get(), facts(s, {{"expires", "0"}})), Storable::Yes);
  }
}

// RFC 9111 5.2.2.5 and 5.2.1.5: no-store in the response or the request.
TEST(Storable, NoStore_5_2_2_5_and_5_2_1_5) {
  EXPECT_EQ(storable(get(), facts(200, {{"cache-control", "max-age=5, no-store"}})),
            Storable::NoStore);
  EXPECT_EQ(storable(get({{"Cache-Control", "no-store"}}), facts(200, {})), Storable::NoStore);
}

// RFC 9111 5.2.2.3: must-understand: stored only for understood codes, then no-store ignored.
TEST(Storable, MustUnderstand_5_2_2_3) {
  EXPECT_EQ(storable(get(), facts(200, {{"cache-control", "must-understand, no-store"}})),
            Storable::Yes);
  EXPECT_EQ(storable(get(), facts(299, {{"cache-control", "must-understand, max-age=5"}})),
            Storable::Status);
  EXPECT_EQ(storable(get(), facts(299, {{"cache-control", "max-age=5"}})), Storable::Yes);
}

// RFC 9111 5.2.2.7: a shared cache does not store private responses (either form).
TEST(Storable, Private_5_2_2_7) {
  EXPECT_EQ(storable(get(), facts(200, {{"cache-control", "private, max-age=5"}})),
            Storable::Private);
  EXPECT_EQ(storable(get(), facts(200, {{"cache-control", "private=\"set-cookie\""}})),
            Storable::Private);
}

// RFC 9111 3.5: requests with Authorization: only with public, must-revalidate or s-maxage.
TEST(Storable, Authorization_3_5) {
  const auto auth = get({{"Authorization", "Bearer x"}});
  EXPECT_EQ(storable(auth, facts(200, {{"cache-control", "max-age=5"}})), Storable::Authorization);
  EXPECT_EQ(storable(auth, facts(200, {})), Storable::Authorization);
  for (std::string_view cc : {"public", "must-revalidate", "s-maxage=5"})
    EXPECT_EQ(storable(auth, facts(200, {{"cache-control", cc}})), Storable::Yes) << cc;
}

// RFC 9111 5.2.2.4: a no-cache response is storable (and always revalidated).
TEST(Storable, NoCacheStorable_5_2_2_4) {
  const auto f = facts(200, {{"cache-control", "no-cache"}, {"etag", "\"a\""}});
  EXPECT_EQ(storable(get(), f), Storable::Yes);
  EXPECT_EQ(decide({}, f, kT).serve, Serve::Revalidate);
  EXPECT_TRUE(worth_storing(f));
}

// Too many directives: a no-store could be hiding after the limit.
TEST(Storable, TooManyDirectives) {
  std::string many;
  for (size_t i = 0; i <= kMaxDirectives; ++i)
    many += "x" + std::to_string(i) + ", ";
  EXPECT_EQ(storable(get(), facts(200, {{"cache-control", many}})), Storable::TooManyDirectives);
}

// RFC 9111 4.2.1: s-maxage over max-age over Expires - Date.
TEST(Freshness, LifetimeOrder_4_2_1) {
  EXPECT_EQ(freshness_lifetime(facts(200, {{"cache-control", "max-age=10, s-maxage=20"}})).seconds,
            20);
  EXPECT_EQ(
      freshness_lifetime(facts(200, {{"cache-control", "max-age=10"}, {"expires", date(kT + 100)}}))
          .seconds,
      10);
  EXPECT_EQ(freshness_lifetime(facts(200, {{"date", date(kT - 50)}, {"expires", date(kT + 100)}}))
                .seconds,
            150);
  // No Date: the response time stands for it (RFC 9110 6.6.1).
  EXPECT_EQ(freshness_lifetime(facts(200, {{"expires", date(kT + 100)}})).seconds, 100);
  // Expires in the past.
  EXPECT_EQ(freshness_lifetime(facts(200, {{"expires", date(kT - 100)}})).seconds, 0);
}

// RFC 9111 4.2.1 (invalid freshness → stale) and 5.3 (invalid Expires → in the past).
TEST(Freshness, InvalidMeansStale_4_2_1_5_3) {
  EXPECT_EQ(freshness_lifetime(facts(200, {{"cache-control", "max-age=abc"},
                                           {"last-modified", date(kT - 100000)}}))
                .seconds,
            0);
  EXPECT_EQ(freshness_lifetime(facts(200, {{"cache-control", "s-maxage=x, max-age=60"}})).seconds,
            0);
  EXPECT_EQ(freshness_lifetime(facts(200, {{"expires", "0"}, {"last-modified", date(kT - 1000)}}))
                .seconds,
            0);
  // Two Expires fields: invalid.
  EXPECT_EQ(
      freshness_lifetime(facts(200, {{"expires", date(kT + 100)}, {"expires", date(kT + 100)}}))
          .seconds,
      0);
}

// RFC 9111 4.2.2: heuristic: 10 % of Date - Last-Modified, capped, only without explicit
// freshness, for heuristically cacheable statuses or public (5.2.2.9).
TEST(Freshness, Heuristic_4_2_2) {
  auto l =
      freshness_lifetime(facts(200, {{"date", date(kT)}, {"last-modified", date(kT - 10000)}}));
  EXPECT_EQ(l.seconds, 1000);
  EXPECT_TRUE(l.heuristic);
  l = freshness_lifetime(facts(200, {{"last-modified", date(kT - 100 * 86400)}}));
  EXPECT_EQ(l.seconds, kDefaultHeuristicCap);
  EXPECT_EQ(freshness_lifetime(facts(200, {{"last-modified", date(kT - 100 * 86400)}}), 60).seconds,
            60);
  // Not for 302, unless public.
  EXPECT_EQ(freshness_lifetime(facts(302, {{"last-modified", date(kT - 10000)}})).seconds, 0);
  EXPECT_EQ(freshness_lifetime(
                facts(302, {{"last-modified", date(kT - 10000)}, {"cache-control", "public"}}))
                .seconds,
            1000);
  // Not with explicit freshness, nor without Last-Modified, nor a future Last-Modified.
  EXPECT_EQ(freshness_lifetime(
                facts(200, {{"last-modified", date(kT - 10000)}, {"cache-control", "max-age=0"}}))
                .seconds,
            0);
  EXPECT_EQ(freshness_lifetime(facts(200, {})).seconds, 0);
  EXPECT_EQ(freshness_lifetime(facts(200, {{"last-modified", date(kT + 10)}})).seconds, 0);
}

// RFC 9213 2.2: a valid CDN-Cache-Control overrides Cache-Control and Expires.
TEST(Freshness, CdnCacheControlPrecedence_RFC9213_2_2) {
  auto f = facts(200, {{"cache-control", "max-age=10, no-store"},
                       {"CDN-Cache-Control", "max-age=600"},
                       {"expires", date(kT + 5)}});
  EXPECT_TRUE(f.targeted);
  EXPECT_EQ(freshness_lifetime(f).seconds, 600);
  EXPECT_EQ(storable(get(), f), Storable::Yes);
  f = facts(200, {{"cache-control", "max-age=600"}, {"cdn-cache-control", "no-store"}});
  EXPECT_EQ(storable(get(), f), Storable::NoStore);
  // Only Expires left after ignoring it: a CDN field without freshness gives none.
  f = facts(200, {{"cdn-cache-control", "must-revalidate"}, {"expires", date(kT + 5)}});
  EXPECT_FALSE(f.has_expires);
  EXPECT_EQ(freshness_lifetime(f).seconds, 0);
  // An invalid CDN field is ignored: Cache-Control applies.
  f = facts(200, {{"cache-control", "max-age=10"}, {"cdn-cache-control", "Max-Age=600"}});
  EXPECT_FALSE(f.targeted);
  EXPECT_EQ(freshness_lifetime(f).seconds, 10);
}

// RFC 9111 4.2.3: the age calculation, term by term.
TEST(Freshness, CurrentAge_4_2_3) {
  // Sent at 100, received at 103 (delay 3), Date 90 (apparent age 13), Age 5 (corrected 8).
  auto f = facts(200, {{"date", date(90)}, {"age", "5"}}, 100, 103);
  EXPECT_EQ(current_age(f, 103), 13);   // max(13, 8) + 0
  EXPECT_EQ(current_age(f, 203), 113);  // + resident time
  // Age dominates when larger: Age 60 + delay 3.
  f = facts(200, {{"date", date(100)}, {"age", "60"}}, 100, 103);
  EXPECT_EQ(current_age(f, 110), 63 + 7);
  // Date in the future (clock skew): apparent age 0.
  f = facts(200, {{"date", date(500)}}, 100, 100);
  EXPECT_EQ(current_age(f, 100), 0);
  // No Date: the response time. Invalid Age: ignored (5.1). Only the first Age counts.
  f = facts(200, {{"age", "x"}}, 100, 100);
  EXPECT_EQ(current_age(f, 110), 10);
  f = facts(200, {{"age", "7"}, {"age", "100"}}, 100, 100);
  EXPECT_EQ(current_age(f, 100), 7);
  // Overflow clamps to 2^31 (1.2.2).
  f = facts(200, {{"age", "99999999999999"}}, 0, 0);
  EXPECT_EQ(current_age(f, int64_t{1} << 40), int64_t{kMaxDeltaSeconds});
}

// RFC 9111 4.2: fresh while age < lifetime.
TEST(Serve, FreshThenStale_4_2) {
  const auto f = facts(200, {{"cache-control", "max-age=60"}, {"etag", "\"e\""}});
  auto d = decide({}, f, kT + 59);
  EXPECT_EQ(d.serve, Serve::Fresh);
  EXPECT_EQ(d.age, 59);
  EXPECT_EQ(d.lifetime, 60);
  EXPECT_EQ(d.staleness, 0);
  d = decide({}, f, kT + 60);
  EXPECT_EQ(d.serve, Serve::Revalidate);
  EXPECT_EQ(d.staleness, 0);
  EXPECT_EQ(decide({}, f, kT + 70).staleness, 10);
}

// RFC 9111 5.2.1.1: request max-age; 5.2.1.3: min-fresh; 5.2.1.4: no-cache.
TEST(Serve, RequestDirectives_5_2_1) {
  const auto f = facts(200, {{"cache-control", "max-age=60"}});
  EXPECT_EQ(decide(rd("max-age=10"), f, kT + 10).serve, Serve::Fresh);
  EXPECT_EQ(decide(rd("max-age=10"), f, kT + 11).serve, Serve::Revalidate);
  EXPECT_EQ(decide(rd("max-age=0"), f, kT).serve, Serve::Fresh);  // age 0 ≤ 0
  EXPECT_EQ(decide(rd("max-age=0"), f, kT + 1).serve, Serve::Revalidate);
  EXPECT_EQ(decide(rd("max-age=zz"), f, kT + 1).serve, Serve::Revalidate);  // invalid = 0
  EXPECT_EQ(decide(rd("min-fresh=20"), f, kT + 40).serve, Serve::Fresh);
  EXPECT_EQ(decide(rd("min-fresh=20"), f, kT + 41).serve, Serve::Revalidate);
  EXPECT_EQ(decide(rd("min-fresh=bad"), f, kT + 41).serve, Serve::Fresh);  // ignored
  EXPECT_EQ(decide(rd("no-cache"), f, kT).serve, Serve::Revalidate);
}

// RFC 9111 5.2.1.2: max-stale with and without a value.
TEST(Serve, MaxStale_5_2_1_2) {
  const auto f = facts(200, {{"cache-control", "max-age=60"}});
  EXPECT_EQ(decide(rd("max-stale=10"), f, kT + 70).serve, Serve::Stale);
  EXPECT_EQ(decide(rd("max-stale=10"), f, kT + 71).serve, Serve::Revalidate);
  EXPECT_EQ(decide(rd("max-stale"), f, kT + 100000).serve, Serve::Stale);
  EXPECT_EQ(decide(rd("max-stale=oops"), f, kT + 61).serve, Serve::Revalidate);
  // With a request max-age the age limit still holds.
  EXPECT_EQ(decide(rd("max-stale, max-age=65"), f, kT + 66).serve, Serve::Revalidate);
}

// RFC 9111 4.2.4, 5.2.2.2, 5.2.2.8, 5.2.2.10: must-revalidate, proxy-revalidate and s-maxage
// forbid stale answers, max-stale and stale-* included.
TEST(Serve, NoStaleWhenForbidden_4_2_4) {
  for (std::string_view cc :
       {"max-age=60, must-revalidate, stale-while-revalidate=100, stale-if-error=100",
        "max-age=60, proxy-revalidate, stale-while-revalidate=100, stale-if-error=100",
        "s-maxage=60, stale-while-revalidate=100, stale-if-error=100"}) {
    const auto f = facts(200, {{"cache-control", cc}});
    EXPECT_EQ(decide({}, f, kT + 30).serve, Serve::Fresh) << cc;
    auto d = decide(rd("max-stale"), f, kT + 61);
    EXPECT_EQ(d.serve, Serve::Revalidate) << cc;
    EXPECT_FALSE(d.stale_if_error) << cc;
    EXPECT_EQ(decide({}, f, kT + 61).serve, Serve::Revalidate) << cc;
  }
}

// RFC 9111 5.2.2.4: no-cache response: revalidate always, even when fresh; no stale-if-error.
TEST(Serve, NoCacheResponse_5_2_2_4) {
  const auto f = facts(200, {{"cache-control", "no-cache, max-age=600, stale-if-error=60"}});
  auto d = decide({}, f, kT);
  EXPECT_EQ(d.serve, Serve::Revalidate);
  EXPECT_FALSE(d.stale_if_error);
  EXPECT_EQ(decide(rd("max-stale"), f, kT).serve, Serve::Revalidate);
  // The qualified form is treated the same.
  EXPECT_EQ(
      decide({}, facts(200, {{"cache-control", "no-cache=\"set-cookie\", max-age=600"}}), kT).serve,
      Serve::Revalidate);
}

// RFC 5861 3: stale-while-revalidate.
TEST(Serve, StaleWhileRevalidate_RFC5861_3) {
  const auto f = facts(200, {{"cache-control", "max-age=60, stale-while-revalidate=30"}});
  EXPECT_EQ(decide({}, f, kT + 59).serve, Serve::Fresh);
  EXPECT_EQ(decide({}, f, kT + 60).serve, Serve::StaleWhileRevalidate);
  EXPECT_EQ(decide({}, f, kT + 90).serve, Serve::StaleWhileRevalidate);
  EXPECT_EQ(decide({}, f, kT + 91).serve, Serve::Revalidate);
  // The client's own limits win.
  EXPECT_EQ(decide(rd("max-age=61"), f, kT + 62).serve, Serve::Revalidate);
  EXPECT_EQ(decide(rd("min-fresh=1"), f, kT + 62).serve, Serve::Revalidate);
  EXPECT_EQ(decide(rd("no-cache"), f, kT + 62).serve, Serve::Revalidate);
}

// RFC 5861 4: stale-if-error, in the response or the request.
TEST(Serve, StaleIfError_RFC5861_4) {
  for (uint16_t s : {500, 502, 503, 504})
    EXPECT_TRUE(is_stale_if_error_status(s));
  for (uint16_t s : {200, 404, 501, 505})
    EXPECT_FALSE(is_stale_if_error_status(s));
  auto f = facts(200, {{"cache-control", "max-age=60, stale-if-error=100"}});
  auto d = decide({}, f, kT + 160);
  EXPECT_EQ(d.serve, Serve::Revalidate);
  EXPECT_TRUE(d.stale_if_error);
  EXPECT_FALSE(decide({}, f, kT + 161).stale_if_error);
  f = facts(200, {{"cache-control", "max-age=60"}});
  EXPECT_FALSE(decide({}, f, kT + 61).stale_if_error);
  EXPECT_TRUE(decide(rd("stale-if-error=5"), f, kT + 65).stale_if_error);
  EXPECT_FALSE(decide(rd("stale-if-error=5"), f, kT + 66).stale_if_error);
}

// RFC 9111 5.2.1.7: only-if-cached: stored and usable, or 504.
TEST(Serve, OnlyIfCached_5_2_1_7) {
  const auto f = facts(200, {{"cache-control", "max-age=60"}});
  EXPECT_EQ(decide(rd("only-if-cached"), f, kT).serve, Serve::Fresh);
  EXPECT_EQ(decide(rd("only-if-cached"), f, kT + 61).serve, Serve::GatewayTimeout);
  EXPECT_EQ(decide(rd("only-if-cached, max-stale"), f, kT + 61).serve, Serve::Stale);
}

// RFC 9111 4.4: which responses to unsafe methods invalidate.
TEST(Invalidation, Methods_4_4) {
  EXPECT_TRUE(invalidates(Method::Post, 200));
  EXPECT_TRUE(invalidates(Method::Put, 204));
  EXPECT_TRUE(invalidates(Method::Delete, 301));
  EXPECT_TRUE(invalidates(Method::Patch, 200));
  EXPECT_TRUE(invalidates(Method::Other, 200));  // unknown methods are unsafe
  EXPECT_FALSE(invalidates(Method::Post, 404));
  EXPECT_FALSE(invalidates(Method::Post, 500));
  EXPECT_FALSE(invalidates(Method::Post, 100));
  for (Method m : {Method::Get, Method::Head, Method::Options, Method::Trace})
    EXPECT_FALSE(invalidates(m, 200));
}

// RFC 9111 4.4: the URI, Location and Content-Location of the same origin only.
TEST(Invalidation, Targets_4_4) {
  const std::string_view o = "https://example.com";
  auto t = invalidation_targets(o, "/a/b?x=1", "", "");
  ASSERT_EQ(t.count, 1);
  EXPECT_EQ(t.uris[0], "https://example.com/a/b?x=1");

  t = invalidation_targets(o, "/a/b", "/c?y", "HTTPS://Example.COM:443/d#frag");
  ASSERT_EQ(t.count, 3);
  EXPECT_EQ(t.uris[1], "https://example.com/c?y");
  EXPECT_EQ(t.uris[2], "https://example.com/d");

  // Relative references (RFC 3986 5.2), dot segments, network-path references.
  t = invalidation_targets(o, "/a/b/c?q", "d/../e", "//example.com/./f/");
  ASSERT_EQ(t.count, 3);
  EXPECT_EQ(t.uris[1], "https://example.com/a/b/e");
  EXPECT_EQ(t.uris[2], "https://example.com/f/");
  t = invalidation_targets(o, "/a/b", "?z", "../../../x");
  ASSERT_EQ(t.count, 3);
  EXPECT_EQ(t.uris[1], "https://example.com/a/b?z");
  EXPECT_EQ(t.uris[2], "https://example.com/x");

  // Other origins: another host, scheme or port, userinfo, or not a URI at all.
  for (std::string_view other :
       {"https://evil.com/a", "http://example.com/a", "https://example.com:8443/a", "//evil.com/a",
        "https://u@example.com/a", "mailto:x@example.com", "https://[::1/x"}) {
    EXPECT_EQ(invalidation_targets(o, "/", other, "").count, 1) << other;
  }
  // The same URI is not listed twice; an explicit default port is the same origin.
  t = invalidation_targets("http://h:80", "/p", "http://H/p", "/p#x");
  EXPECT_EQ(t.count, 1);
  t = invalidation_targets("http://h", "/p", "http://h:80/q", "");
  ASSERT_EQ(t.count, 2);
  EXPECT_EQ(t.uris[1], "http://h/q");
}

// RFC 9111 3.1: hop-by-hop and proxy fields are not stored.
TEST(Fields, Storing_3_1) {
  const std::vector<Field> in = {{"Content-Type", "text/plain"},
                                 {"Connection", "close, X-Hop"},
                                 {"X-Hop", "1"},
                                 {"Keep-Alive", "timeout=5"},
                                 {"Transfer-Encoding", "chunked"},
                                 {"Proxy-Authenticate", "Basic"},
                                 {"Proxy-Authentication-Info", "x"},
                                 {"ETag", "\"1\""}};
  std::vector<Field> out;
  fields_to_store(in, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].name, "Content-Type");
  EXPECT_EQ(out[1].name, "ETag");
}

// RFC 9111 3.2 / 4.3.4: a 304 replaces the stored fields it carries, except Content-Length
// and the fields the stored body depends on.
TEST(Fields, Merge304_3_2) {
  const std::vector<Field> stored = {{"Content-Type", "text/html"}, {"Content-Length", "10"},
                                     {"Content-Encoding", "gzip"},  {"Cache-Control", "max-age=1"},
                                     {"Set-Cookie", "a=1"},         {"Set-Cookie", "b=2"},
                                     {"Vary", "Accept-Encoding"},   {"ETag", "\"1\""}};
  const std::vector<Field> update = {{"cache-control", "max-age=600"},
                                     {"Content-Length", "0"},
                                     {"Content-Encoding", "br"},
                                     {"Content-Range", "bytes 0-1/2"},
                                     {"Vary", "*"},
                                     {"Connection", "x-hop"},
                                     {"X-Hop", "1"},
                                     {"Set-Cookie", "c=3"},
                                     {"Date", "Tue, 15 Nov 1994 08:12:31 GMT"}};
  std::vector<Field> out;
  merge_304_fields(stored, update, out);
  std::vector<std::string> got;
  for (const Field& f : out)
    got.push_back(std::string(f.name) + ": " + std::string(f.value));
  const std::vector<std::string> want = {"Content-Type: text/html",
                                         "Content-Length: 10",
                                         "Content-Encoding: gzip",
                                         "Vary: Accept-Encoding",
                                         "ETag: \"1\"",
                                         "cache-control: max-age=600",
                                         "Set-Cookie: c=3",
                                         "Date: Tue, 15 Nov 1994 08:12:31 GMT"};
  EXPECT_EQ(got, want);
  for (std::string_view n : {"content-length", "Content-Encoding", "content-range", "vary",
                             "transfer-encoding", "proxy-authenticate"})
    EXPECT_FALSE(updated_by_304(n, http::HopByHop({}))) << n;
  EXPECT_TRUE(updated_by_304("Content-Type", http::HopByHop({})));
}

// Whether a storable response is worth the memory.
TEST(Storable, WorthStoring) {
  EXPECT_FALSE(worth_storing(facts(200, {})));
  EXPECT_TRUE(worth_storing(facts(200, {{"etag", "\"x\""}})));
  EXPECT_TRUE(worth_storing(facts(200, {{"cache-control", "max-age=1"}})));
  EXPECT_TRUE(worth_storing(facts(200, {{"cache-control", "max-age=0, stale-if-error=60"}})));
}

}  // namespace
}  // namespace weir::cache
