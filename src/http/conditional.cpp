#include "http/conditional.hpp"

#include <charconv>
#include <limits>

#include "http/chars.hpp"
#include "http/date.hpp"
#include "http/fields.hpp"

namespace weir::http {
namespace {

bool is_etagc(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == 0x21 || (u >= 0x23 && u <= 0x7E) || u >= 0x80;
}

bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

// Parses one entity-tag at s[i]; on success advances i past it.
std::optional<EntityTag> entity_tag_at(std::string_view s, size_t& i) {
  size_t j = i;
  EntityTag tag;
  if (s.substr(j, 2) == "W/") {
    tag.weak = true;
    j += 2;
  }
  if (j >= s.size() || s[j] != '"') return std::nullopt;
  const size_t open = j++;
  while (j < s.size() && is_etagc(s[j]))
    ++j;
  if (j >= s.size() || s[j] != '"') return std::nullopt;
  ++j;
  tag.opaque = s.substr(open, j - open);
  i = j;
  return tag;
}

// Skips OWS and commas (list separators and the empty elements 5.6.1 tells recipients to accept).
void skip_separators(std::string_view s, size_t& i) {
  while (i < s.size() && (is_ows(s[i]) || s[i] == ','))
    ++i;
}

// After an element: OWS, then a comma or the end.
bool element_end(std::string_view s, size_t& i) {
  while (i < s.size() && is_ows(s[i]))
    ++i;
  return i == s.size() || s[i] == ',';
}

// 1*DIGIT no larger than 2^63 - 1 at s[i]; advances i.
bool number_at(std::string_view s, size_t& i, uint64_t& out) {
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  const size_t start = i;
  uint64_t v = 0;
  while (i < s.size() && chars::is_digit(s[i])) {
    const auto d = static_cast<uint64_t>(s[i] - '0');
    if (v > (kMax - d) / 10) return false;
    v = v * 10 + d;
    ++i;
  }
  out = v;
  return i > start;
}

void append_number(uint64_t v, std::string& out) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace

std::optional<EntityTag> parse_entity_tag(std::string_view s) {
  size_t i = 0;
  auto tag = entity_tag_at(s, i);
  if (!tag || i != s.size()) return std::nullopt;
  return tag;
}

bool strong_match(const EntityTag& a, const EntityTag& b) {
  return !a.weak && !b.weak && a.opaque == b.opaque;
}

bool weak_match(const EntityTag& a, const EntityTag& b) {
  return a.opaque == b.opaque;
}

bool etag_list_matches(std::string_view list, std::string_view etag, bool weak_comparison) {
  if (list == "*") return true;
  const auto self = parse_entity_tag(etag);
  size_t i = 0;
  while (true) {
    skip_separators(list, i);
    if (i == list.size()) return false;
    const auto tag = entity_tag_at(list, i);
    if (!tag || !element_end(list, i)) return false;
    if (self && (weak_comparison ? weak_match(*tag, *self) : strong_match(*tag, *self))) {
      return true;
    }
  }
}

Precondition evaluate_preconditions(const ConditionalHeaders& h, const Validators& v,
                                    Method method) {
  const bool get_or_head = method == Method::Get || method == Method::Head;
  // Step 1 / 2.
  if (h.if_match) {
    if (!etag_list_matches(*h.if_match, v.etag, false)) return Precondition::PreconditionFailed;
  } else if (h.if_unmodified_since && v.last_modified) {
    const auto date = parse_http_date(*h.if_unmodified_since);
    if (date && *v.last_modified > *date) return Precondition::PreconditionFailed;
  }
  // Step 3 / 4.
  if (h.if_none_match) {
    if (etag_list_matches(*h.if_none_match, v.etag, true)) {
      return get_or_head ? Precondition::NotModified : Precondition::PreconditionFailed;
    }
  } else if (get_or_head && h.if_modified_since && v.last_modified) {
    const auto date = parse_http_date(*h.if_modified_since);
    if (date && *v.last_modified <= *date) return Precondition::NotModified;
  }
  return Precondition::Proceed;
}

bool if_range_matches(std::string_view if_range, const Validators& v, int64_t now) {
  if (if_range.starts_with('"') || if_range.starts_with("W/")) {
    const auto tag = parse_entity_tag(if_range);
    const auto self = parse_entity_tag(v.etag);
    return tag && self && strong_match(*tag, *self);
  }
  const auto date = parse_http_date(if_range);
  return date && v.last_modified && *date == *v.last_modified && *v.last_modified < now;
}

ByteRange parse_range(std::string_view value, uint64_t size) {
  const ByteRange ignore{};
  if (value.size() > kMaxRangeHeader || value.size() < 6 ||
      !detail::ascii_iequals(value.substr(0, 5), "bytes") || value[5] != '=') {
    return ignore;
  }
  const std::string_view set = value.substr(6);
  bool seen = false, suffix = false, has_last = false;
  uint64_t first = 0, last = 0;
  size_t i = 0;
  while (true) {
    skip_separators(set, i);
    if (i == set.size()) break;
    if (seen) return ignore;  // a second range: several ranges → the whole representation
    seen = true;
    if (set[i] == '-') {
      suffix = true;
      ++i;
      if (!number_at(set, i, last)) return ignore;  // `last` holds the suffix length
    } else {
      if (!number_at(set, i, first) || i == set.size() || set[i] != '-') return ignore;
      ++i;
      if (i < set.size() && chars::is_digit(set[i])) {
        if (!number_at(set, i, last) || last < first) return ignore;
        has_last = true;
      }
    }
    if (!element_end(set, i)) return ignore;
  }
  if (!seen || size == 0) return ignore;
  if (suffix) {
    if (last == 0) return {RangeKind::Unsatisfiable, 0, 0};
    const uint64_t n = last < size ? last : size;
    return {RangeKind::Satisfiable, size - n, n};
  }
  if (first >= size) return {RangeKind::Unsatisfiable, 0, 0};
  const uint64_t end = has_last && last < size - 1 ? last : size - 1;
  return {RangeKind::Satisfiable, first, end - first + 1};
}

ByteRange evaluate_range(const ConditionalHeaders& h, const Validators& v, Method method,
                         uint64_t size, int64_t now) {
  if (method != Method::Get || !h.range) return {};
  if (h.if_range && !if_range_matches(*h.if_range, v, now)) return {};
  return parse_range(*h.range, size);
}

void format_content_range(uint64_t offset, uint64_t length, uint64_t size, std::string& out) {
  out.append("bytes ");
  append_number(offset, out);
  out.push_back('-');
  append_number(offset + length - 1, out);
  out.push_back('/');
  append_number(size, out);
}

void format_unsatisfied_range(uint64_t size, std::string& out) {
  out.append("bytes */");
  append_number(size, out);
}

ConditionalHeaders conditional_headers(std::span<const Header> fields) {
  ConditionalHeaders c;
  for (const auto& f : fields) {
    std::optional<std::string_view>* slot = nullptr;
    if (iequals(f.name, "if-none-match")) {
      slot = &c.if_none_match;
    } else if (iequals(f.name, "if-modified-since")) {
      slot = &c.if_modified_since;
    } else if (iequals(f.name, "if-match")) {
      slot = &c.if_match;
    } else if (iequals(f.name, "if-unmodified-since")) {
      slot = &c.if_unmodified_since;
    } else if (iequals(f.name, "range")) {
      slot = &c.range;
    } else if (iequals(f.name, "if-range")) {
      slot = &c.if_range;
    }
    if (slot && !*slot) *slot = f.value;
  }
  return c;
}

}  // namespace weir::http
