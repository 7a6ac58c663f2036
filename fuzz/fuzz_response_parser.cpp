// Fuzzes parse_response for each kind of request method that changes the framing: no crash, no
// read outside the buffer, errors are 502, and prefixes never contradict the full verdict.
#include <array>
#include <cstdint>

#include "fuzz_util.hpp"
#include "http/parser.hpp"

using namespace weir::http;
using weir::fuzz::Buffer;
using weir::fuzz::inside;

namespace {

ParseResult check_one(std::string_view input, const Limits& limits, Method method) {
  std::array<Header, 16> storage;
  const Buffer buf(input);
  const std::string_view b = buf.view();
  ResponseHead h;
  const ParseResult r = parse_response(b, h, storage, limits, method);
  switch (r.status) {
    case ParseStatus::Done: {
      FUZZ_CHECK(r.consumed > 0 && r.consumed <= b.size() && r.consumed <= limits.max_head_bytes);
      FUZZ_CHECK(h.status >= 100 && h.status <= 999);
      FUZZ_CHECK(h.version_minor <= 1);
      FUZZ_CHECK(h.headers.size() <= limits.max_headers);
      const std::string_view head = b.substr(0, r.consumed);
      FUZZ_CHECK(inside(h.reason, head));
      for (const Header& f : h.headers)
        FUZZ_CHECK(inside(f.name, head) && inside(f.value, head));
      FUZZ_CHECK((h.body == BodyKind::ContentLength) == (h.content_length > 0));
      if (h.body == BodyKind::UntilClose) FUZZ_CHECK(!h.keep_alive);
      if (method == Method::Head || h.status < 200 || h.status == 204 || h.status == 304) {
        FUZZ_CHECK(h.body == BodyKind::None);
      }
      const Buffer shorter(head.substr(0, head.size() - 1));
      std::array<Header, 16> storage2;
      ResponseHead h2;
      FUZZ_CHECK(parse_response(shorter.view(), h2, storage2, limits, method).status ==
                 ParseStatus::NeedMore);
      break;
    }
    case ParseStatus::Error:
      FUZZ_CHECK(r.error_status == 502);
      FUZZ_CHECK(r.error_offset <= b.size());
      break;
    case ParseStatus::NeedMore:
      FUZZ_CHECK(b.size() <= limits.max_head_bytes);
      break;
  }
  return r;
}

void check(std::string_view input, const Limits& limits, Method method) {
  const ParseResult full = check_one(input, limits, method);
  const size_t len = input.size() / 2;
  if (len >= input.size()) return;
  const ParseResult part = check_one(input.substr(0, len), limits, method);
  if (part.status == ParseStatus::Error) FUZZ_CHECK(full.status == ParseStatus::Error);
  if (part.status == ParseStatus::Done) {
    FUZZ_CHECK(full.status == ParseStatus::Done && full.consumed == part.consumed);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check(input, Limits{}, Method::Get);
  check(input, Limits{}, Method::Head);
  check(input, Limits{}, Method::Connect);
  Limits small;
  small.max_request_line = 32;
  small.max_head_bytes = 128;
  small.max_headers = 3;
  check(input, small, Method::Get);
  return 0;
}
