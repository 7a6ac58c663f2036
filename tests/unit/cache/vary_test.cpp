// The secondary cache key (cache/vary.hpp), RFC 9111 4.1.
#include "cache/vary.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace weir::cache {
namespace {

using http::Header;

std::string names_of(std::vector<Header> fields, VaryKind* kind = nullptr) {
  std::string names;
  const VaryKind k = parse_vary(fields, names);
  if (kind) *kind = k;
  return names;
}

std::string key(std::string_view names, std::vector<Header> request) {
  std::string out;
  EXPECT_TRUE(secondary_key(names, request, out));
  return out;
}

// RFC 9111 4.1: names are case-insensitive; several Vary lines are one list.
TEST(Vary, NamesNormalized_4_1) {
  VaryKind k;
  EXPECT_EQ(names_of({{"Vary", "Accept-Encoding, accept-language"}}, &k),
            "accept-encoding,accept-language");
  EXPECT_EQ(k, VaryKind::Names);
  EXPECT_EQ(names_of({{"vary", "Accept-Language"}, {"VARY", " ACCEPT-ENCODING ,"}}),
            "accept-encoding,accept-language");
  EXPECT_EQ(names_of({{"Vary", "a, A, a"}}), "a");
  EXPECT_EQ(names_of({{"Content-Type", "x"}}, &k), "");
  EXPECT_EQ(k, VaryKind::None);
  EXPECT_EQ(names_of({{"Vary", " , "}}, &k), "");
  EXPECT_EQ(k, VaryKind::None);
}

// RFC 9111 4.1: "*" never matches: not stored.
TEST(Vary, StarNotStored_4_1) {
  VaryKind k;
  names_of({{"Vary", "Accept-Encoding, *"}}, &k);
  EXPECT_EQ(k, VaryKind::Star);
  EXPECT_FALSE(vary_storable(k));
  names_of({{"Vary", "accept"}, {"Vary", "*"}}, &k);
  EXPECT_EQ(k, VaryKind::Star);
}

TEST(Vary, BoundsAndInvalid) {
  std::string list;
  for (size_t i = 0; i < kMaxVaryNames; ++i)
    list += "h" + std::to_string(i) + ",";
  VaryKind k;
  names_of({{"Vary", list}}, &k);
  EXPECT_EQ(k, VaryKind::Names);
  const std::string more = list + "one-more";
  names_of({{"Vary", more}}, &k);
  EXPECT_EQ(k, VaryKind::TooMany);
  EXPECT_FALSE(vary_storable(k));
  names_of({{"Vary", "a b"}}, &k);
  EXPECT_EQ(k, VaryKind::Invalid);
  EXPECT_FALSE(vary_storable(k));
}

// RFC 9111 4.1: the key from the request's fields: lines combined, whitespace normalized;
// absent differs from empty.
TEST(Vary, SecondaryKey_4_1) {
  const std::string n = "accept-encoding,accept-language";
  EXPECT_EQ(key(n, {{"Accept-Encoding", "gzip,br"}, {"Accept-Language", "en"}}),
            "accept-encoding:=gzip, br\naccept-language:=en\n");
  // Combining lines and whitespace around commas normalize to the same key.
  EXPECT_EQ(
      key(n, {{"accept-encoding", "gzip"}, {"ACCEPT-ENCODING", " br "}, {"Accept-Language", "en"}}),
      key(n, {{"Accept-Encoding", "gzip ,  br"}, {"accept-language", "en"}}));
  EXPECT_EQ(key(n, {}), "accept-encoding:!\naccept-language:!\n");
  EXPECT_NE(key(n, {{"Accept-Encoding", ""}}), key(n, {}));
  // Values are not case-folded: a different variant (a miss, never a wrong hit).
  EXPECT_NE(key(n, {{"Accept-Encoding", "GZIP"}}), key(n, {{"Accept-Encoding", "gzip"}}));
  EXPECT_EQ(key("", {{"Accept-Encoding", "gzip"}}), "");
}

TEST(Vary, KeyTooLong) {
  const std::string big(kMaxSecondaryKey, 'x');
  std::string out;
  EXPECT_FALSE(secondary_key("user-agent", std::vector<Header>{{"User-Agent", big}}, out));
  EXPECT_TRUE(secondary_key("user-agent", std::vector<Header>{{"User-Agent", "x"}}, out));
}

}  // namespace
}  // namespace weir::cache
