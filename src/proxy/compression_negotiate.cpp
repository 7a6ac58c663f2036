// Choosing a content coding and deciding and editing a response head for compression
// (compression.hpp). The streaming compressors are in compression_codec.cpp.
#include <algorithm>
#include <string>
#include <string_view>

#include "http/chars.hpp"
#include "http/fields.hpp"
#include "proxy/compression.hpp"

namespace weir::proxy {

namespace chars = http::chars;

std::string_view token(Encoding e) {
  switch (e) {
    case Encoding::Identity:
      return "identity";
    case Encoding::Gzip:
      return "gzip";
    case Encoding::Brotli:
      return "br";
    case Encoding::Zstd:
      return "zstd";
  }
  return "identity";
}

std::optional<Encoding> parse_encoding(std::string_view name) {
  for (Encoding e : {Encoding::Gzip, Encoding::Brotli, Encoding::Zstd})
    if (http::iequals(name, token(e))) return e;
  return std::nullopt;
}

int CompressionLevels::of(Encoding e) const {
  switch (e) {
    case Encoding::Gzip:
      return gzip;
    case Encoding::Brotli:
      return br;
    case Encoding::Zstd:
      return zstd;
    case Encoding::Identity:
      break;
  }
  return 0;
}

namespace {

using http::detail::for_each_element;  // comma-separated elements, trimmed of OWS

// ---------------------------------------------------------------------------------------------
// Accept-Encoding

// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths; -1 if invalid.
int parse_qvalue(std::string_view s) {
  if (s.empty() || (s[0] != '0' && s[0] != '1')) return -1;
  const int whole = s[0] - '0';
  if (s.size() == 1) return whole * 1000;
  if (s[1] != '.' || s.size() > 5) return -1;
  int frac = 0;
  int scale = 100;
  for (char c : s.substr(2)) {
    if (!chars::is_digit(c)) return -1;
    frac += (c - '0') * scale;
    scale /= 10;
  }
  if (whole == 1 && frac != 0) return -1;
  return whole * 1000 + frac;
}

// codings [ OWS ";" OWS "q=" qvalue ] (the element is already trimmed of OWS). False if the
// element is anything else (other parameters included).
bool parse_coding(std::string_view elem, std::string_view& coding, int& q) {
  size_t n = 0;
  while (n < elem.size() && chars::is_token(elem[n]))
    ++n;
  if (n == 0) return false;
  coding = elem.substr(0, n);
  std::string_view rest = elem.substr(n);
  if (rest.empty()) {
    q = 1000;
    return true;
  }
  rest = chars::trim_ows(rest);
  if (rest.empty() || rest[0] != ';') return false;
  rest = chars::trim_ows(rest.substr(1));
  if (rest.size() < 2 || chars::lower(rest[0]) != 'q' || rest[1] != '=') return false;
  q = parse_qvalue(rest.substr(2));
  return q >= 0;
}

// The q-value each coding was given (-1: not listed).
struct Weights {
  int gzip = -1;
  int br = -1;
  int zstd = -1;
  int any = -1;  // "*"

  int* slot(std::string_view coding) {
    if (http::iequals(coding, "gzip") || http::iequals(coding, "x-gzip")) return &gzip;
    if (http::iequals(coding, "br")) return &br;
    if (http::iequals(coding, "zstd")) return &zstd;
    if (coding == "*") return &any;
    return nullptr;
  }
  int of(Encoding e) const {
    int q = -1;
    switch (e) {
      case Encoding::Gzip:
        q = gzip;
        break;
      case Encoding::Brotli:
        q = br;
        break;
      case Encoding::Zstd:
        q = zstd;
        break;
      case Encoding::Identity:
        return 0;
    }
    if (q < 0) q = any;
    return q < 0 ? 0 : q;
  }
};

}  // namespace

Encoding choose_encoding(std::span<const std::string_view> accept_encoding_values,
                         std::span<const Encoding> preference) {
  Weights w;
  size_t elements = 0;
  for (std::string_view value : accept_encoding_values) {
    const bool more = for_each_element(value, [&](std::string_view elem) {
      if (elem.empty()) return true;
      if (++elements > kMaxAcceptEncodingElements) return false;
      std::string_view coding;
      int q = 0;
      if (!parse_coding(elem, coding, q)) return true;
      if (int* s = w.slot(coding)) *s = *s < 0 ? q : std::min(*s, q);
      return true;
    });
    if (!more) break;
  }
  Encoding best = Encoding::Identity;
  int best_q = 0;
  for (Encoding e : preference) {
    const int q = w.of(e);
    if (q > best_q) {
      best = e;
      best_q = q;
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Whether to compress

namespace {

// The media type of a Content-Type value: before any parameter, trimmed.
std::string_view media_type(std::string_view content_type) {
  return chars::trim_ows(content_type.substr(0, content_type.find(';')));
}

bool type_listed(std::string_view type, const std::vector<std::string>& types) {
  const size_t slash = type.find('/');
  if (slash == 0 || slash == std::string_view::npos || slash + 1 == type.size()) return false;
  for (const std::string& t : types) {
    if (http::iequals(t, type)) return true;
    if (t == "*/*") return true;
    if (t.size() > 2 && t.ends_with("/*") &&
        http::iequals(std::string_view(t).substr(0, t.size() - 2), type.substr(0, slash)))
      return true;
  }
  return false;
}

// A Cache-Control directive name (before any "=value") among the elements of a value.
bool has_directive(std::string_view cache_control, std::string_view directive) {
  return !for_each_element(cache_control, [&](std::string_view elem) {
    return !http::iequals(chars::trim_ows(elem.substr(0, elem.find('='))), directive);
  });
}

bool only_identity(std::string_view content_encoding) {
  return for_each_element(content_encoding, [](std::string_view elem) {
    return elem.empty() || http::iequals(elem, "identity");
  });
}

}  // namespace

bool should_compress(const ResponseOut& head, http::Method request_method,
                     const CompressionRules& rules) {
  if (request_method == http::Method::Head) return false;
  if (head.status < 200 || head.status == 204 || head.status == 206 || head.status == 304)
    return false;
  if (head.body == http::BodyKind::None) return false;
  if (head.body == http::BodyKind::ContentLength && head.content_length < rules.min_size)
    return false;
  bool ok = true;
  int content_types = 0;
  std::string_view type;
  head.for_each_field([&](std::string_view name, std::string_view value) {
    if (http::iequals(name, "content-encoding")) {
      ok &= only_identity(value);
    } else if (http::iequals(name, "content-type")) {
      ++content_types;
      type = media_type(value);
    } else if (http::iequals(name, "cache-control")) {
      ok &= !has_directive(value, "no-transform");
    }
  });
  return ok && content_types == 1 && type_listed(type, rules.types);
}

// ---------------------------------------------------------------------------------------------
// The compressed response's head

namespace {

// Vary after adding Accept-Encoding to `vary` (the values of every Vary field, comma-joined);
// false if it needs no change.
bool merged_vary(std::string& vary) {
  bool listed = false;
  for_each_element(vary, [&](std::string_view elem) {
    listed = elem == "*" || http::iequals(elem, "accept-encoding");
    return !listed;
  });
  if (listed) return false;
  vary.append(vary.empty() ? "Accept-Encoding" : ", Accept-Encoding");
  return true;
}

// A weak validator for `etag`; "" if it is not an entity-tag (RFC 9110 8.8.3):
// [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text.
std::string weak_etag(std::string_view etag) {
  const bool weak = etag.starts_with("W/");
  std::string_view opaque = weak ? etag.substr(2) : etag;
  if (opaque.size() < 2 || opaque.front() != '"' || opaque.back() != '"') return {};
  for (char c : opaque.substr(1, opaque.size() - 2)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u == '"' || u == 0x7F) return {};
  }
  return weak ? std::string(etag) : "W/" + std::string(etag);
}

// The values of every Vary field of `head`, comma-joined.
std::string vary_of(const ResponseOut& head) {
  std::string vary;
  head.for_each_field([&](std::string_view name, std::string_view value) {
    if (!http::iequals(name, "vary")) return;
    std::string_view v = chars::trim_ows(value);
    if (v.empty()) return;
    if (!vary.empty()) vary.append(", ");
    vary.append(v);
  });
  return vary;
}

}  // namespace

void add_vary_accept_encoding(const ResponseOut& head, HeaderEdits& edits) {
  std::string vary = vary_of(head);
  if (merged_vary(vary)) edits.set("Vary", vary);
}

void edit_head_for_compression(const ResponseOut& head, Encoding e, HeaderEdits& edits) {
  // Copies first: the values seen may live in `edits`, which the edits below change.
  std::string vary = vary_of(head);
  std::string etag;  // the weak form of the one ETag ("" if invalid)
  size_t etags = 0;
  bool etag_weak = false;  // ... which it was already
  head.for_each_field([&](std::string_view name, std::string_view value) {
    if (http::iequals(name, "etag")) {
      if (++etags > 1) return;
      etag = weak_etag(chars::trim_ows(value));
      etag_weak = !etag.empty() && etag == value;  // already weak, exactly as sent
    }
  });

  edits.set("Content-Encoding", token(e));
  edits.remove("Content-Length");
  edits.remove("Accept-Ranges");
  for (std::string_view digest : {"Content-Digest", "Repr-Digest", "Digest", "Content-MD5"})
    edits.remove(digest);
  if (merged_vary(vary)) edits.set("Vary", vary);
  // One strong ETag: its weak form. Several (invalid), or not an entity-tag: none.
  if (etags == 1 && !etag.empty()) {
    if (!etag_weak) edits.set("ETag", etag);
  } else if (etags > 0) {
    edits.remove("ETag");
  }
}

}  // namespace weir::proxy
