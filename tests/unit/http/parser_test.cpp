#include "http/parser.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <vector>

namespace weir::http {
namespace {

using namespace std::string_literals;

constexpr uint16_t kNeedMore = 1;  // pseudo-status in tables: parse must ask for more bytes

// Each parse gets its own exact-size copy of the input, so the views in the head stay valid
// and ASan flags any read past the end.
struct Parsed {
  std::unique_ptr<char[]> buf;
  ParseResult result;
  RequestHead head;
  std::array<Header, 128> storage;
};

std::unique_ptr<char[]> copy(std::string_view s) {
  auto buf = std::make_unique<char[]>(s.size());
  std::copy(s.begin(), s.end(), buf.get());
  return buf;
}

std::unique_ptr<Parsed> req(std::string_view input, const Limits& limits = {}) {
  auto p = std::make_unique<Parsed>();
  p->buf = copy(input);
  p->result = parse_request({p->buf.get(), input.size()}, p->head, p->storage, limits);
  return p;
}

struct ParsedResponse {
  std::unique_ptr<char[]> buf;
  ParseResult result;
  ResponseHead head;
  std::array<Header, 128> storage;
};

std::unique_ptr<ParsedResponse> resp(std::string_view buf, Method method = Method::Get,
                                     const Limits& limits = {}) {
  auto p = std::make_unique<ParsedResponse>();
  p->buf = copy(buf);
  p->result = parse_response({p->buf.get(), buf.size()}, p->head, p->storage, limits, method);
  return p;
}

// ---------------------------------------------------------------------------------------------
// Malformed, ambiguous or oversized requests and the status each one gets.

struct BadCase {
  const char* name;
  std::string input;
  uint16_t status;
};

const std::string kH = "Host: a\r\n";

std::vector<BadCase> bad_requests() {
  return {
      // Request smuggling: framing headers that two parsers could read differently.
      {"cl_and_te",
       "POST / HTTP/1.1\r\n" + kH + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"te_and_cl",
       "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400},
      {"te_and_cl_zero",
       "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 400},
      {"te_upper_and_cl",
       "POST / HTTP/1.1\r\n" + kH + "TRANSFER-ENCODING: CHUNKED\r\nCONTENT-LENGTH: 3\r\n\r\n", 400},
      {"te_chunked_identity",
       "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: chunked, identity\r\n\r\n", 400},
      {"te_space_before_colon", "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding : chunked\r\n\r\n",
       400},
      {"te_chunked_twice_list",
       "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: chunked, chunked\r\n\r\n", 400},
      {"te_chunked_twice_fields",
       "POST / HTTP/1.1\r\n" + kH +
           "Transfer-Encoding: chunked\r\n"
           "Transfer-Encoding: chunked\r\n\r\n",
       400},
      {"te_chunked_then_gzip_field",
       "POST / HTTP/1.1\r\n" + kH +
           "Transfer-Encoding: chunked\r\n"
           "Transfer-Encoding: gzip\r\n\r\n",
       400},
      {"te_identity", "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: identity\r\n\r\n", 400},
      {"te_gzip_only", "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: gzip\r\n\r\n", 400},
      {"te_gzip_chunked", "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: gzip, chunked\r\n\r\n",
       501},
      {"te_empty", "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: \r\n\r\n", 400},
      {"te_empty_element", "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: ,chunked\r\n\r\n", 400},
      {"te_quoted", "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: \"chunked\"\r\n\r\n", 400},
      {"te_parameter", "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: chunked;a=b\r\n\r\n", 400},
      {"te_xchunked", "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: xchunked\r\n\r\n", 400},
      {"te_vtab",
       "POST / HTTP/1.1\r\n" + kH +
           "Transfer-Encoding: \x0b"
           "chunked\r\n\r\n",
       400},
      {"te_in_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"cl_plus", "POST / HTTP/1.1\r\n" + kH + "Content-Length: +5\r\n\r\n", 400},
      {"cl_minus", "POST / HTTP/1.1\r\n" + kH + "Content-Length: -1\r\n\r\n", 400},
      {"cl_list_differs", "POST / HTTP/1.1\r\n" + kH + "Content-Length: 5, 6\r\n\r\n", 400},
      {"cl_fields_differ",
       "POST / HTTP/1.1\r\n" + kH + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
      {"cl_field_then_list_differs",
       "POST / HTTP/1.1\r\n" + kH + "Content-Length: 5\r\nContent-Length: 5, 6\r\n\r\n", 400},
      {"cl_inner_space", "POST / HTTP/1.1\r\n" + kH + "Content-Length: 5 5\r\n\r\n", 400},
      {"cl_empty", "POST / HTTP/1.1\r\n" + kH + "Content-Length: \r\n\r\n", 400},
      {"cl_empty_element", "POST / HTTP/1.1\r\n" + kH + "Content-Length: 5,\r\n\r\n", 400},
      {"cl_hex", "POST / HTTP/1.1\r\n" + kH + "Content-Length: 0x10\r\n\r\n", 400},
      {"cl_20_digits", "POST / HTTP/1.1\r\n" + kH + "Content-Length: 00000000000000000001\r\n\r\n",
       400},
      {"cl_2_pow_63", "POST / HTTP/1.1\r\n" + kH + "Content-Length: 9223372036854775808\r\n\r\n",
       400},
      {"cl_decimal", "POST / HTTP/1.1\r\n" + kH + "Content-Length: 5.0\r\n\r\n", 400},
      {"cl_nul", "POST / HTTP/1.1\r\n" + kH + "Content-Length: 5\0\r\n\r\n"s, 400},
      // Field syntax.
      {"obs_fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400},
      {"obs_fold_tab", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", 400},
      {"space_before_first_field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},
      {"bare_cr_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400},
      {"bare_cr_end_of_field", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400},
      {"bare_cr_end_of_head", "GET / HTTP/1.1\r\nHost: a\r\n\rX", 400},
      {"bare_lf_end_of_field", "GET / HTTP/1.1\r\nHost: a\n\r\n", 400},
      {"bare_lf_end_of_head", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400},
      {"bare_lf_request_line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400},
      {"nul_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n"s, 400},
      {"nul_in_name", "GET / HTTP/1.1\r\nHost: a\r\nX\0A: b\r\n\r\n"s, 400},
      {"vtab_in_name",
       "GET / HTTP/1.1\r\nHost: a\r\nX\x0b"
       "A: b\r\n\r\n",
       400},
      {"vtab_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x0b\r\n\r\n", 400},
      {"del_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7f\r\n\r\n", 400},
      {"non_ascii_name", "GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: b\r\n\r\n", 400},
      {"space_before_colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
      {"tab_before_colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400},
      {"empty_name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400},
      {"no_colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A b\r\n\r\n", 400},
      {"separator_in_name", "GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", 400},
      // Host.
      {"missing_host", "GET / HTTP/1.1\r\n\r\n", 400},
      {"two_hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"two_hosts_same", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400},
      {"two_hosts_http10", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"host_space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
      {"host_slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
      {"host_userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400},
      {"host_bad_port", "GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", 400},
      {"host_port_too_big", "GET / HTTP/1.1\r\nHost: a:70000\r\n\r\n", 400},
      {"host_only_port", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400},
      {"host_unclosed_ipv6", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400},
      // Request line.
      {"space_in_target", "GET /a b HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"fragment", "GET /a#b HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"bad_percent", "GET /%zz HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"short_percent", "GET /a%4 HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"percent_at_end", "GET /a% HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"ctl_in_target", "GET /a\x01 HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"del_in_target", "GET /a\x7f HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"non_ascii_target", "GET /caf\xc3\xa9 HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"tab_in_target", "GET /a\tb HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"http20", "GET / HTTP/2.0\r\n" + kH + "\r\n", 505},
      {"http30", "GET / HTTP/3.0\r\n" + kH + "\r\n", 505},
      {"http12", "GET / HTTP/1.2\r\n" + kH + "\r\n", 505},
      {"http09", "GET / HTTP/0.9\r\n" + kH + "\r\n", 505},
      {"http1_10", "GET / HTTP/1.10\r\n" + kH + "\r\n", 400},
      {"http_lowercase", "GET / http/1.1\r\n" + kH + "\r\n", 400},
      {"http_mixed_case", "GET / Http/1.1\r\n" + kH + "\r\n", 400},
      {"http_no_minor", "GET / HTTP/1\r\n" + kH + "\r\n", 400},
      {"http_space", "GET / HTTP /1.1\r\n" + kH + "\r\n", 400},
      {"no_version", "GET /\r\n" + kH + "\r\n", 400},
      {"trailing_space", "GET / HTTP/1.1 \r\n" + kH + "\r\n", 400},
      {"tab_after_method", "GET\t/ HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"tab_before_version", "GET /\tHTTP/1.1\r\n" + kH + "\r\n", 400},
      {"double_space", "GET  / HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"leading_space", " GET / HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"empty_method", " / HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"bad_method", "G(T / HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"relative_target", "GET a/b HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"asterisk_not_options", "GET * HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"connect_origin_form", "CONNECT / HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"connect_no_port", "CONNECT a HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"absolute_ftp", "GET ftp://a/ HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"absolute_userinfo", "GET http://u@a/ HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"absolute_no_host", "GET http:///a HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"five_leading_crlf", "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"leading_bare_cr", "\rGET / HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"leading_bare_lf", "\nGET / HTTP/1.1\r\n" + kH + "\r\n", 400},
      {"nul_first", "\0GET / HTTP/1.1\r\n"s + kH + "\r\n", 400},
      // Limits (default: 8 KiB request line, 64 KiB head, 100 fields).
      {"request_line_too_long", "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n" + kH + "\r\n",
       414},
      {"request_line_too_long_incomplete", "GET /" + std::string(9000, 'a'), 414},
      {"head_too_large", "GET / HTTP/1.1\r\n" + kH + "X: " + std::string(70000, 'a') + "\r\n\r\n",
       431},
      {"head_too_large_incomplete", "GET / HTTP/1.1\r\n" + kH + "X: " + std::string(70000, 'a'),
       431},
      {"too_many_fields",
       [] {
         std::string s = "GET / HTTP/1.1\r\n" + kH;
         for (int i = 0; i < 100; ++i)
           s += "X: y\r\n";
         return s + "\r\n";
       }(),
       431},
  };
}

TEST(ParseRequest, RejectsMalformedAndAmbiguous) {
  const auto cases = bad_requests();
  ASSERT_GE(cases.size(), 60u);
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    auto p = req(c.input);
    ASSERT_EQ(p->result.status, ParseStatus::Error) << "reason: " << p->result.error_reason;
    EXPECT_EQ(p->result.error_status, c.status) << "reason: " << p->result.error_reason;
    EXPECT_LE(p->result.error_offset, c.input.size());
    EXPECT_STRNE(p->result.error_reason, "");
  }
}

// The verdict on a bad request never depends on how its bytes were split: every prefix is
// NeedMore or the same error.
TEST(ParseRequest, ErrorsAreStableAcrossPrefixes) {
  for (const BadCase& c : bad_requests()) {
    SCOPED_TRACE(c.name);
    if (c.input.size() > 4096) continue;  // the limit cases: quadratic, and covered above
    for (size_t len = 0; len < c.input.size(); ++len) {
      auto p = req(std::string_view(c.input).substr(0, len));
      if (p->result.status == ParseStatus::Error) {
        ASSERT_EQ(p->result.error_status, c.status) << "prefix " << len;
      } else {
        ASSERT_EQ(p->result.status, ParseStatus::NeedMore) << "prefix " << len;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Valid requests.

TEST(ParseRequest, SimpleGet) {
  const std::string s = "GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n";
  auto p = req(s);
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->result.consumed, s.size());
  const RequestHead& h = p->head;
  EXPECT_EQ(h.method, Method::Get);
  EXPECT_EQ(h.method_text, "GET");
  EXPECT_EQ(h.target, "/index.html");
  EXPECT_EQ(h.path, "/index.html");
  EXPECT_EQ(h.query, "");
  EXPECT_EQ(h.authority, "");
  EXPECT_EQ(h.version_minor, 1);
  ASSERT_EQ(h.headers.size(), 1u);
  EXPECT_EQ(h.headers[0].name, "Host");
  EXPECT_EQ(h.headers[0].value, "example.com");
  EXPECT_EQ(h.host, "example.com");
  EXPECT_EQ(h.body, BodyKind::None);
  EXPECT_EQ(h.content_length, 0u);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_FALSE(h.expect_continue);
  EXPECT_FALSE(h.upgrade);
  EXPECT_EQ(h.upgrade_protocol, "");
}

TEST(ParseRequest, EveryFieldFilled) {
  const std::string s =
      "POST /api/v1/items?id=7&x=%20y HTTP/1.1\r\n"
      "host:  api.example.com:8080 \t\r\n"
      "Content-Length: 11\r\n"
      "X-Empty:\r\n"
      "X-Spaces:   inner  value  \r\n"
      "Connection: keep-alive\r\n"
      "\r\n"
      "hello world";
  auto p = req(s);
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->result.consumed, s.size() - 11);
  const RequestHead& h = p->head;
  EXPECT_EQ(h.method, Method::Post);
  EXPECT_EQ(h.target, "/api/v1/items?id=7&x=%20y");
  EXPECT_EQ(h.path, "/api/v1/items");
  EXPECT_EQ(h.query, "id=7&x=%20y");
  EXPECT_EQ(h.host, "api.example.com:8080");
  ASSERT_EQ(h.headers.size(), 5u);
  EXPECT_EQ(h.headers[0].name, "host");
  EXPECT_EQ(h.headers[1].name, "Content-Length");
  EXPECT_EQ(h.headers[1].value, "11");
  EXPECT_EQ(h.headers[2].name, "X-Empty");
  EXPECT_EQ(h.headers[2].value, "");
  EXPECT_EQ(h.headers[3].value, "inner  value");
  EXPECT_EQ(h.headers[4].value, "keep-alive");
  EXPECT_EQ(h.body, BodyKind::ContentLength);
  EXPECT_EQ(h.content_length, 11u);
  EXPECT_TRUE(h.keep_alive);
  // Views point into the input buffer.
  EXPECT_EQ(h.target.data(), p->buf.get() + 5);
  EXPECT_EQ(h.headers.data(), p->storage.data());
}

TEST(ParseRequest, Methods) {
  const std::pair<const char*, Method> methods[] = {
      {"GET", Method::Get},        {"HEAD", Method::Head},      {"POST", Method::Post},
      {"PUT", Method::Put},        {"DELETE", Method::Delete},  {"OPTIONS", Method::Options},
      {"TRACE", Method::Trace},    {"PATCH", Method::Patch},    {"get", Method::Other},
      {"PROPFIND", Method::Other}, {"M-SEARCH", Method::Other},
  };
  for (const auto& [text, m] : methods) {
    SCOPED_TRACE(text);
    auto p = req(std::string(text) + " / HTTP/1.1\r\nHost: a\r\n\r\n");
    ASSERT_EQ(p->result.status, ParseStatus::Done);
    EXPECT_EQ(p->head.method, m);
    EXPECT_EQ(p->head.method_text, text);
  }
}

TEST(ParseRequest, Pipelined) {
  const std::string first = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string second = "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
  const std::string third = "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string all = first + second + third;
  std::array<Header, 8> storage;
  RequestHead head;
  std::string_view rest = all;
  ParseResult r = parse_request(rest, head, storage, Limits{});
  ASSERT_EQ(r.status, ParseStatus::Done);
  ASSERT_EQ(r.consumed, first.size());
  EXPECT_EQ(head.path, "/1");
  rest.remove_prefix(r.consumed);
  r = parse_request(rest, head, storage, Limits{});
  ASSERT_EQ(r.status, ParseStatus::Done);
  EXPECT_EQ(head.path, "/2");
  EXPECT_EQ(rest.substr(r.consumed, 2), "hi");
  rest.remove_prefix(r.consumed + 2);
  r = parse_request(rest, head, storage, Limits{});
  ASSERT_EQ(r.status, ParseStatus::Done);
  EXPECT_EQ(head.path, "/3");
  EXPECT_EQ(r.consumed, rest.size());
}

TEST(ParseRequest, NeedMoreAtEveryPrefix) {
  const std::string requests[] = {
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
      "\r\nPOST /a/b?c=%41 HTTP/1.1\r\nHost: x.y:81\r\nContent-Length: 5\r\n"
      "Transfer-Encoding: \r\n\r\n",  // bad, but only once complete
      "PUT http://h:1/p?q HTTP/1.0\r\nConnection: keep-alive\r\nX-A:\t b \r\n\r\n",
      "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
      "OPTIONS * HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
  };
  for (const std::string& s : requests) {
    SCOPED_TRACE(s);
    auto full = req(s);
    ASSERT_NE(full->result.status, ParseStatus::NeedMore);
    for (size_t len = 0; len < s.size(); ++len) {
      auto p = req(std::string_view(s).substr(0, len));
      ASSERT_EQ(p->result.status, ParseStatus::NeedMore) << "prefix " << len;
    }
    if (full->result.status == ParseStatus::Done) {
      EXPECT_EQ(full->result.consumed, s.size());
    }
  }
}

TEST(ParseRequest, LeadingEmptyLinesAreSkipped) {
  const std::string s = "\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
  auto p = req(s);
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->result.consumed, s.size());
  EXPECT_EQ(p->head.method_text, "GET");
}

TEST(ParseRequest, ExpectContinue) {
  auto p = req("PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_TRUE(p->head.expect_continue);
  // HTTP/1.0 clients cannot expect a 100 (RFC 9110 10.1.1); other expectations are ignored.
  p = req("PUT /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_FALSE(p->head.expect_continue);
  p = req("PUT /x HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_FALSE(p->head.expect_continue);
}

TEST(ParseRequest, Upgrade) {
  auto p =
      req("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
          "Upgrade: websocket\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_TRUE(p->head.upgrade);
  EXPECT_EQ(p->head.upgrade_protocol, "websocket");
  // Upgrade not listed in Connection: not an upgrade.
  p = req("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_FALSE(p->head.upgrade);
  // Connection lists upgrade but there is no Upgrade field.
  p = req("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_FALSE(p->head.upgrade);
  // Ignored in HTTP/1.0 (RFC 9110 7.8).
  p = req("GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_FALSE(p->head.upgrade);
}

TEST(ParseRequest, KeepAliveRules) {
  struct Case {
    std::string head;
    bool keep_alive;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true},
      {"GET / HTTP/1.0\r\n\r\n", false},
      {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
      {"GET / HTTP/1.0\r\nConnection: x\r\nConnection: te, keep-alive\r\n\r\n", true},
      {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.head);
    auto p = req(c.head);
    ASSERT_EQ(p->result.status, ParseStatus::Done);
    EXPECT_EQ(p->head.keep_alive, c.keep_alive);
  }
}

TEST(ParseRequest, AbsoluteForm) {
  auto p = req("GET http://Example.com:8080/a/b?c=d HTTP/1.1\r\nHost: other\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.target, "http://Example.com:8080/a/b?c=d");
  EXPECT_EQ(p->head.authority, "Example.com:8080");
  EXPECT_EQ(p->head.host, "Example.com:8080");  // the target wins over Host (RFC 9112 3.2.2)
  EXPECT_EQ(p->head.path, "/a/b");
  EXPECT_EQ(p->head.query, "c=d");

  p = req("GET HTTPS://h?x HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.path, "/");
  EXPECT_EQ(p->head.query, "x");

  p = req("GET http://h HTTP/1.0\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.host, "h");
  EXPECT_EQ(p->head.path, "/");
  EXPECT_EQ(p->head.query, "");
}

TEST(ParseRequest, AuthorityAndAsteriskForms) {
  auto p = req("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.method, Method::Connect);
  EXPECT_EQ(p->head.authority, "example.com:443");
  EXPECT_EQ(p->head.host, "example.com:443");
  EXPECT_EQ(p->head.path, "example.com:443");

  p = req("CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.authority, "[::1]:8443");

  p = req("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.target, "*");
  EXPECT_EQ(p->head.path, "*");
}

TEST(ParseRequest, HostVariants) {
  const char* ok_hosts[] = {"a",
                            "example.com",
                            "a:1",
                            "a:",
                            "[::1]",
                            "[2001:db8::1]:80",
                            "10.0.0.1:65535",
                            "xn--bcher-kva.example",
                            ""};
  for (const char* host : ok_hosts) {
    SCOPED_TRACE(host);
    auto p = req("GET / HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n");
    ASSERT_EQ(p->result.status, ParseStatus::Done) << p->result.error_reason;
    EXPECT_EQ(p->head.host, host);
  }
  auto p = req("GET / HTTP/1.0\r\n\r\n");  // Host is optional in HTTP/1.0
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.host, "");
  EXPECT_EQ(p->head.version_minor, 0);
}

TEST(ParseRequest, BodyKinds) {
  auto p = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.body, BodyKind::None);

  p = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\ncontent-length: 5\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.body, BodyKind::ContentLength);
  EXPECT_EQ(p->head.content_length, 5u);

  p = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.content_length, 9223372036854775807u);

  p = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.content_length, 7u);

  p = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  CHUNKED \r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.body, BodyKind::Chunked);

  p = req("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.body, BodyKind::None);
}

TEST(ParseRequest, ErrorOffsetPointsAtTheProblem) {
  const std::string s = "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n";
  auto p = req(s);
  ASSERT_EQ(p->result.status, ParseStatus::Error);
  EXPECT_EQ(p->result.error_offset, s.find('#'));
  const std::string t = "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01\r\n\r\n";
  p = req(t);
  ASSERT_EQ(p->result.status, ParseStatus::Error);
  EXPECT_EQ(p->result.error_offset, t.find('\x01'));
}

// ---------------------------------------------------------------------------------------------
// Limits: exactly at the limit passes, one byte or field over fails.

TEST(ParseRequest, RequestLineLimitBoundary) {
  Limits limits;
  limits.max_request_line = 64;
  const std::string prefix = "GET /";
  const std::string suffix = " HTTP/1.1";
  const std::string at_limit =
      prefix + std::string(64 - prefix.size() - suffix.size(), 'a') + suffix;
  ASSERT_EQ(at_limit.size(), 64u);
  auto p = req(at_limit + "\r\nHost: a\r\n\r\n", limits);
  EXPECT_EQ(p->result.status, ParseStatus::Done);
  p = req(at_limit + "\r", limits);
  EXPECT_EQ(p->result.status, ParseStatus::NeedMore);

  const std::string over = prefix + std::string(65 - prefix.size() - suffix.size(), 'a') + suffix;
  p = req(over + "\r\nHost: a\r\n\r\n", limits);
  ASSERT_EQ(p->result.status, ParseStatus::Error);
  EXPECT_EQ(p->result.error_status, 414);
  // Incomplete: 414 as soon as the line cannot fit any more.
  p = req("GET /" + std::string(60, 'a'), limits);
  ASSERT_EQ(p->result.status, ParseStatus::Error);
  EXPECT_EQ(p->result.error_status, 414);
  p = req("GET /" + std::string(40, 'a'), limits);
  EXPECT_EQ(p->result.status, ParseStatus::NeedMore);
}

TEST(ParseRequest, HeadBytesLimitBoundary) {
  Limits limits;
  limits.max_head_bytes = 100;
  const std::string start = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
  const std::string end = "\r\n\r\n";
  const std::string at_limit = start + std::string(100 - start.size() - end.size(), 'v') + end;
  ASSERT_EQ(at_limit.size(), 100u);
  auto p = req(at_limit + "GET", limits);
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->result.consumed, 100u);

  const std::string over = start + std::string(101 - start.size() - end.size(), 'v') + end;
  p = req(over, limits);
  ASSERT_EQ(p->result.status, ParseStatus::Error);
  EXPECT_EQ(p->result.error_status, 431);
  p = req(over.substr(0, 100), limits);  // not over yet
  EXPECT_EQ(p->result.status, ParseStatus::NeedMore);
  p = req(over.substr(0, 101), limits);
  ASSERT_EQ(p->result.status, ParseStatus::Error);
  EXPECT_EQ(p->result.error_status, 431);
}

TEST(ParseRequest, HeaderCountLimitBoundary) {
  Limits limits;
  limits.max_headers = 10;
  auto with_fields = [](int n) {
    std::string s = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 1; i < n; ++i)
      s += "X-" + std::to_string(i) + ": v\r\n";
    return s + "\r\n";
  };
  auto p = req(with_fields(9), limits);
  EXPECT_EQ(p->result.status, ParseStatus::Done);
  p = req(with_fields(10), limits);
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.headers.size(), 10u);
  p = req(with_fields(11), limits);
  ASSERT_EQ(p->result.status, ParseStatus::Error);
  EXPECT_EQ(p->result.error_status, 431);

  // The caller's storage is a limit too.
  std::array<Header, 3> small;
  RequestHead head;
  ParseResult r = parse_request(with_fields(3), head, small, Limits{});
  EXPECT_EQ(r.status, ParseStatus::Done);
  r = parse_request(with_fields(4), head, small, Limits{});
  ASSERT_EQ(r.status, ParseStatus::Error);
  EXPECT_EQ(r.error_status, 431);
}

// ---------------------------------------------------------------------------------------------
// Responses.

TEST(ParseResponse, ContentLength) {
  const std::string s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
  auto p = resp(s);
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->result.consumed, s.size() - 5);
  EXPECT_EQ(p->head.status, 200);
  EXPECT_EQ(p->head.reason, "OK");
  EXPECT_EQ(p->head.version_minor, 1);
  ASSERT_EQ(p->head.headers.size(), 2u);
  EXPECT_EQ(p->head.headers[1].value, "x");
  EXPECT_EQ(p->head.body, BodyKind::ContentLength);
  EXPECT_EQ(p->head.content_length, 5u);
  EXPECT_TRUE(p->head.keep_alive);
}

TEST(ParseResponse, BodyKinds) {
  struct Case {
    std::string head;
    Method method;
    BodyKind body;
    bool keep_alive;
  };
  const Case cases[] = {
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Method::Get, BodyKind::Chunked,
       true},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Method::Get,
       BodyKind::Chunked, true},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", Method::Get, BodyKind::UntilClose,
       false},
      {"HTTP/1.1 200 OK\r\n\r\n", Method::Get, BodyKind::UntilClose, false},
      {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Method::Get, BodyKind::None, true},
      {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", Method::Head, BodyKind::None, true},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Method::Head, BodyKind::None, true},
      {"HTTP/1.1 204 No Content\r\n\r\n", Method::Get, BodyKind::None, true},
      {"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", Method::Get, BodyKind::None,
       true},
      {"HTTP/1.1 100 Continue\r\n\r\n", Method::Post, BodyKind::None, true},
      {"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
       Method::Get, BodyKind::None, true},
      {"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", Method::Get, BodyKind::None, true},
      {"HTTP/1.1 200 Connection established\r\n\r\n", Method::Connect, BodyKind::None, true},
      {"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 3\r\n\r\n", Method::Connect,
       BodyKind::ContentLength, true},
      {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n", Method::Get,
       BodyKind::ContentLength, false},
      {"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", Method::Get, BodyKind::ContentLength, false},
      {"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n", Method::Get,
       BodyKind::ContentLength, true},
      {"HTTP/1.0 200 OK\r\n\r\n", Method::Get, BodyKind::UntilClose, false},
      {"HTTP/1.1 500 Oops\r\nContent-Length: 1, 1\r\n\r\n", Method::Get, BodyKind::ContentLength,
       true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.head);
    auto p = resp(c.head, c.method);
    ASSERT_EQ(p->result.status, ParseStatus::Done) << p->result.error_reason;
    EXPECT_EQ(p->result.consumed, c.head.size());
    EXPECT_EQ(p->head.body, c.body);
    EXPECT_EQ(p->head.keep_alive, c.keep_alive);
  }
}

TEST(ParseResponse, StatusLineVariants) {
  auto p = resp("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n");  // no SP before empty reason
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.status, 200);
  EXPECT_EQ(p->head.reason, "");
  p = resp("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.reason, "");
  p = resp("HTTP/1.1 599 Some\tOdd Reason \xe2\x9c\x93\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.status, 599);
  EXPECT_EQ(p->head.reason, "Some\tOdd Reason \xe2\x9c\x93");
  p = resp("HTTP/1.1 999 X\r\n\r\n");
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->head.status, 999);
}

TEST(ParseResponse, MalformedIs502) {
  const std::pair<const char*, std::string> cases[] = {
      {"status_099", "HTTP/1.1 099 X\r\n\r\n"},
      {"status_two_digits", "HTTP/1.1 20 OK\r\n\r\n"},
      {"status_four_digits", "HTTP/1.1 2000 OK\r\n\r\n"},
      {"status_letters", "HTTP/1.1 2x0 OK\r\n\r\n"},
      {"http2", "HTTP/2.0 200 OK\r\n\r\n"},
      {"http_lower", "http/1.1 200 OK\r\n\r\n"},
      {"no_space", "HTTP/1.1200 OK\r\n\r\n"},
      {"two_spaces", "HTTP/1.1  200 OK\r\n\r\n"},
      {"ctl_in_reason", "HTTP/1.1 200 O\x01K\r\n\r\n"},
      {"bare_lf", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"},
      {"bare_cr", "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n"},
      {"cl_and_te", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"},
      {"te_http10", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
      {"te_chunked_twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"},
      {"cl_differs", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"},
      {"cl_bad", "HTTP/1.1 200 OK\r\nContent-Length: 3a\r\n\r\n"},
      {"cl_bad_on_304", "HTTP/1.1 304 OK\r\nContent-Length: -1\r\n\r\n"},
      {"obs_fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"},
      {"space_before_colon", "HTTP/1.1 200 OK\r\nX : a\r\n\r\n"},
      {"nul", "HTTP/1.1 200 OK\r\nX: a\0\r\n\r\n"s},
      {"too_long_status_line", "HTTP/1.1 200 " + std::string(9000, 'x') + "\r\n\r\n"},
      {"too_long_status_line_incomplete", "HTTP/1.1 200 " + std::string(9000, 'x')},
      {"head_too_large", "HTTP/1.1 200 OK\r\nX: " + std::string(70000, 'x')},
  };
  for (const auto& [name, input] : cases) {
    SCOPED_TRACE(name);
    auto p = resp(input);
    ASSERT_EQ(p->result.status, ParseStatus::Error);
    EXPECT_EQ(p->result.error_status, 502) << p->result.error_reason;
  }
}

TEST(ParseResponse, NeedMoreAtEveryPrefix) {
  const std::string s =
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (size_t len = 0; len < s.size(); ++len) {
    auto p = resp(std::string_view(s).substr(0, len));
    ASSERT_EQ(p->result.status, ParseStatus::NeedMore) << "prefix " << len;
  }
  auto p = resp(s);
  ASSERT_EQ(p->result.status, ParseStatus::Done);
  EXPECT_EQ(p->result.consumed, s.size());
}

TEST(ParseResponse, Limits) {
  Limits limits;
  limits.max_headers = 2;
  auto p = resp("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n", Method::Get, limits);
  EXPECT_EQ(p->result.status, ParseStatus::Done);
  p = resp("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", Method::Get, limits);
  ASSERT_EQ(p->result.status, ParseStatus::Error);
  EXPECT_EQ(p->result.error_status, 502);

  limits = Limits{};
  limits.max_request_line = 20;
  const std::string line = "HTTP/1.1 200 " + std::string(7, 'x');  // 20 bytes
  p = resp(line + "\r\n\r\n", Method::Get, limits);
  EXPECT_EQ(p->result.status, ParseStatus::Done);
  p = resp(line + "x\r\n\r\n", Method::Get, limits);
  ASSERT_EQ(p->result.status, ParseStatus::Error);
  EXPECT_EQ(p->result.error_status, 502);
}

// ---------------------------------------------------------------------------------------------
// Helpers.

TEST(Helpers, Iequals) {
  EXPECT_TRUE(iequals("Content-Length", "content-length"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("Host", "Hos"));
  EXPECT_FALSE(iequals("a", "b"));
  EXPECT_FALSE(iequals("\xc3", "\xe3"));  // only ASCII letters fold
}

TEST(Helpers, ListContains) {
  EXPECT_TRUE(list_contains("close", "close"));
  EXPECT_TRUE(list_contains("Keep-Alive, Upgrade", "upgrade"));
  EXPECT_TRUE(list_contains("a ,\t CLOSE\t, b", "close"));
  EXPECT_TRUE(list_contains(",,close,", "close"));
  EXPECT_FALSE(list_contains("closed", "close"));
  EXPECT_FALSE(list_contains("", "close"));
  EXPECT_FALSE(list_contains("clo se", "close"));
  EXPECT_FALSE(list_contains("a, b", ""));
}

TEST(Helpers, HopByHop) {
  const Header headers[] = {{"Connection", "X-Secret, keep-alive"}, {"connection", "x-other"}};
  EXPECT_TRUE(is_hop_by_hop("Connection", {}));
  EXPECT_TRUE(is_hop_by_hop("keep-alive", {}));
  EXPECT_TRUE(is_hop_by_hop("Proxy-Connection", {}));
  EXPECT_TRUE(is_hop_by_hop("TE", {}));
  EXPECT_TRUE(is_hop_by_hop("Trailer", {}));
  EXPECT_TRUE(is_hop_by_hop("Transfer-Encoding", {}));
  EXPECT_TRUE(is_hop_by_hop("upgrade", {}));
  EXPECT_TRUE(is_hop_by_hop("Proxy-Authenticate", {}));
  EXPECT_TRUE(is_hop_by_hop("Proxy-Authorization", {}));
  EXPECT_FALSE(is_hop_by_hop("Host", {}));
  EXPECT_FALSE(is_hop_by_hop("X-Secret", {}));
  EXPECT_TRUE(is_hop_by_hop("x-secret", headers));
  EXPECT_TRUE(is_hop_by_hop("X-Other", headers));
  EXPECT_FALSE(is_hop_by_hop("Content-Type", headers));
}

}  // namespace
}  // namespace weir::http
