#include "model/hash_key.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace weir::model {
namespace {

struct Req {
  std::string raw;
  std::vector<http::Header> storage = std::vector<http::Header>(50);
  http::RequestHead head;
  explicit Req(std::string r) : raw(std::move(r)) {
    EXPECT_EQ(http::parse_request(raw, head, storage, {}).status, http::ParseStatus::Done);
  }
};

std::string key(std::string_view spec, const Req& r, bool* found = nullptr) {
  std::string_view out;
  bool ok = extract_key(KeySpec::parse(spec), r.head, "192.0.2.7", out);
  if (found) *found = ok;
  return ok ? std::string(out) : "<none>";
}

TEST(HashKey, EveryKind) {
  Req r(
      "GET /cart/items?user=42&x=y HTTP/1.1\r\nHost: h\r\nX-Tenant: acme\r\n"
      "Cookie: a=1; session = abc ; b=2\r\n\r\n");
  EXPECT_EQ(key("client_ip", r), "192.0.2.7");
  EXPECT_EQ(key("path", r), "/cart/items");
  EXPECT_EQ(key("header:x-tenant", r), "acme");
  EXPECT_EQ(key("cookie:session", r), "abc");
  EXPECT_EQ(key("cookie:b", r), "2");
  EXPECT_EQ(key("query:user", r), "42");
  EXPECT_EQ(key("query:x", r), "y");
}

TEST(HashKey, AbsentKeys) {
  Req r("GET /p HTTP/1.1\r\nHost: h\r\nCookie: sessionx=1\r\n\r\n");
  bool found = true;
  key("header:x-missing", r, &found);
  EXPECT_FALSE(found);
  key("cookie:session", r, &found);
  EXPECT_FALSE(found);
  key("query:user", r, &found);
  EXPECT_FALSE(found);
}

}  // namespace
}  // namespace weir::model
