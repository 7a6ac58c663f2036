// Fuzzes the static-file path gate and the Range / conditional header parsers
// (proxy/static_files.hpp, http/conditional.hpp, http/date.hpp). Input: the first half is a
// request path (tried with and without a strip_prefix), the second half a header value (tried as
// Range for several representation lengths, as an If-None-Match list and as an HTTP-date).
// Checks: an accepted path decodes to a relative path with no empty, ".", ".." or hidden segment,
// no NUL or backslash, no longer than the input, and decoding is stable; every satisfiable range
// lies inside the representation; strong matching implies weak matching; a parsed date formats
// and parses back to itself.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "http/conditional.hpp"
#include "http/date.hpp"
#include "proxy/static_files.hpp"

namespace {

void check_path(std::string_view path, std::string_view prefix) {
  std::string out;
  const auto r = weir::proxy::decode_static_path(path, prefix, out);
  if (r != weir::proxy::StaticFailure::None) return;
  FUZZ_CHECK(out.size() <= path.size());
  FUZZ_CHECK(out.find('\0') == std::string::npos);
  FUZZ_CHECK(out.find('\\') == std::string::npos);
  if (out.empty()) return;
  FUZZ_CHECK(out.front() != '/' && out.back() != '/');
  size_t i = 0;
  while (i <= out.size()) {
    size_t slash = out.find('/', i);
    if (slash == std::string::npos) slash = out.size();
    const std::string_view seg = std::string_view(out).substr(i, slash - i);
    FUZZ_CHECK(!seg.empty());
    FUZZ_CHECK(seg[0] != '.');  // covers "." and ".."
    i = slash + 1;
  }
  // Without escapes left, the decoded path is a fixed point.
  if (out.find('%') == std::string::npos) {
    std::string again;
    FUZZ_CHECK(weir::proxy::decode_static_path("/" + out, "", again) ==
               weir::proxy::StaticFailure::None);
    FUZZ_CHECK(again == out);
  }
}

void check_range(std::string_view value) {
  using weir::http::RangeKind;
  for (const uint64_t size :
       {uint64_t{0}, uint64_t{1}, uint64_t{10}, uint64_t{1000}, uint64_t{INT64_MAX}}) {
    const auto r = weir::http::parse_range(value, size);
    if (size == 0 || value.size() > weir::http::kMaxRangeHeader) {
      FUZZ_CHECK(r.kind == RangeKind::Ignore);
    }
    if (r.kind == RangeKind::Satisfiable) {
      FUZZ_CHECK(r.length > 0);
      FUZZ_CHECK(r.offset < size);
      FUZZ_CHECK(r.length <= size - r.offset);
      std::string cr;
      weir::http::format_content_range(r.offset, r.length, size, cr);
      FUZZ_CHECK(cr.starts_with("bytes "));
    } else {
      FUZZ_CHECK(r.offset == 0 && r.length == 0);
    }
  }
}

void check_conditionals(std::string_view value) {
  for (const std::string_view etag : {"\"abc\"", "W/\"abc\"", "", "\"\""}) {
    if (weir::http::etag_list_matches(value, etag, false)) {
      FUZZ_CHECK(weir::http::etag_list_matches(value, etag, true));
    }
  }
  const weir::http::Validators v{"\"abc\"", 784111777};
  (void)weir::http::if_range_matches(value, v, 784111777 + 10);
  if (const auto t = weir::http::parse_http_date(value, 1717200000)) {
    std::string s;
    weir::http::format_http_date(*t, s);
    FUZZ_CHECK(s.size() == 29);
    FUZZ_CHECK(weir::http::parse_http_date(s, 1717200000) == t);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const weir::fuzz::Buffer copy(std::string_view(reinterpret_cast<const char*>(data), size));
  const std::string_view all = copy.view();
  const std::string_view path = all.substr(0, size / 2);
  const std::string_view value = all.substr(size / 2);
  check_path(path, "");
  check_path(path, "/assets");
  check_path(path, "/assets/");
  check_range(value);
  check_conditionals(value);
  return 0;
}
