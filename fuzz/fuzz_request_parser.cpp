// Fuzzes parse_request: no crash, no read outside the buffer, views inside the input, and the
// verdict never depends on how the bytes were split (prefixes are NeedMore or the same verdict).
#include <array>
#include <cstdint>

#include "fuzz_util.hpp"
#include "http/parser.hpp"

using namespace weir::http;
using weir::fuzz::Buffer;
using weir::fuzz::inside;

namespace {

bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

ParseResult check_one(std::string_view input, const Limits& limits) {
  std::array<Header, 16> storage;
  const Buffer buf(input);
  const std::string_view b = buf.view();
  RequestHead h;
  const ParseResult r = parse_request(b, h, storage, limits);
  switch (r.status) {
    case ParseStatus::Done: {
      FUZZ_CHECK(r.consumed > 0 && r.consumed <= b.size());
      FUZZ_CHECK(r.consumed <= limits.max_head_bytes);
      FUZZ_CHECK(h.headers.size() <= limits.max_headers && h.headers.size() <= storage.size());
      FUZZ_CHECK(h.version_minor <= 1);
      const std::string_view head = b.substr(0, r.consumed);
      FUZZ_CHECK(inside(h.method_text, head) && !h.method_text.empty());
      FUZZ_CHECK(inside(h.target, head) && !h.target.empty());
      FUZZ_CHECK(inside(h.path, head) || h.path == "/");
      FUZZ_CHECK(inside(h.query, head) && inside(h.authority, head) && inside(h.host, head));
      FUZZ_CHECK(inside(h.upgrade_protocol, head));
      FUZZ_CHECK(h.target.find_first_of("# \r\n\t") == std::string_view::npos);
      for (const Header& f : h.headers) {
        FUZZ_CHECK(inside(f.name, head) && inside(f.value, head) && !f.name.empty());
        for (char c : f.name)
          FUZZ_CHECK(is_token_char(c));
        FUZZ_CHECK(f.value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos);
        if (!f.value.empty()) {
          FUZZ_CHECK(f.value.front() != ' ' && f.value.front() != '\t');
          FUZZ_CHECK(f.value.back() != ' ' && f.value.back() != '\t');
        }
      }
      FUZZ_CHECK((h.body == BodyKind::ContentLength) == (h.content_length > 0));
      FUZZ_CHECK(h.body != BodyKind::UntilClose);
      FUZZ_CHECK(h.version_minor == 1 || h.body != BodyKind::Chunked);
      // The head alone parses the same, and one byte less is NeedMore.
      std::array<Header, 16> storage2;
      RequestHead h2;
      const Buffer exact(head);
      const ParseResult r2 = parse_request(exact.view(), h2, storage2, limits);
      FUZZ_CHECK(r2.status == ParseStatus::Done && r2.consumed == r.consumed);
      FUZZ_CHECK(h2.body == h.body && h2.content_length == h.content_length);
      FUZZ_CHECK(h2.keep_alive == h.keep_alive && h2.headers.size() == h.headers.size());
      const Buffer shorter(head.substr(0, head.size() - 1));
      FUZZ_CHECK(parse_request(shorter.view(), h2, storage2, limits).status ==
                 ParseStatus::NeedMore);
      break;
    }
    case ParseStatus::Error:
      FUZZ_CHECK(r.error_status == 400 || r.error_status == 414 || r.error_status == 431 ||
                 r.error_status == 501 || r.error_status == 505);
      FUZZ_CHECK(r.error_offset <= b.size());
      FUZZ_CHECK(r.error_reason != nullptr && r.error_reason[0] != '\0');
      break;
    case ParseStatus::NeedMore:
      FUZZ_CHECK(b.size() <= limits.max_head_bytes);
      break;
  }
  return r;
}

void check(std::string_view input, const Limits& limits) {
  const ParseResult full = check_one(input, limits);
  // A verdict reached on a prefix is final.
  for (size_t len : {input.size() / 2, input.size() / 3, input.size() * 7 / 8}) {
    if (len >= input.size()) continue;
    const ParseResult part = check_one(input.substr(0, len), limits);
    if (part.status == ParseStatus::Error) {
      FUZZ_CHECK(full.status == ParseStatus::Error && full.error_status == part.error_status);
    } else if (part.status == ParseStatus::Done) {
      FUZZ_CHECK(full.status == ParseStatus::Done && full.consumed == part.consumed);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check(input, Limits{});
  Limits small;
  small.max_request_line = 40;
  small.max_head_bytes = 160;
  small.max_headers = 4;
  check(input, small);
  return 0;
}
