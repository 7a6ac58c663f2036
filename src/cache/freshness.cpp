#include "cache/freshness.hpp"

#include <algorithm>

#include "http/chars.hpp"
#include "http/date.hpp"

namespace weir::cache {

namespace {

constexpr int64_t kMax = kMaxDeltaSeconds;

int64_t clamp31(int64_t v) {
  return std::clamp<int64_t>(v, 0, kMax);
}

bool ieq(std::string_view a, std::string_view b) {
  return http::iequals(a, b);
}

// A singleton date field: invalid when given twice.
void read_date(std::string_view value, bool& seen, std::optional<int64_t>& out) {
  out = seen ? std::nullopt : http::parse_http_date(value);
  seen = true;
}

}  // namespace

bool heuristically_cacheable(uint16_t status) {
  switch (status) {
    case 200:
    case 203:
    case 204:
    case 206:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
      return true;
    default:
      return false;
  }
}

bool status_understood(uint16_t status) {
  if (status >= 100 && status <= 101) return true;
  if (status >= 200 && status <= 206) return true;
  if ((status >= 300 && status <= 305) || status == 307 || status == 308) return true;
  if ((status >= 400 && status <= 417) || status == 421 || status == 422 || status == 426)
    return true;
  return status >= 500 && status <= 505;
}

ResponseFacts response_facts(uint16_t status, std::span<const Field> fields, int64_t request_time,
                             int64_t response_time) {
  ResponseFacts f;
  f.status = status;
  f.request_time = request_time;
  f.response_time = response_time;
  std::array<std::string_view, kMaxDirectiveLines> cc{};
  std::array<std::string_view, kMaxDirectiveLines> cdn{};
  size_t ncc = 0, ncdn = 0;
  bool cc_over = false, cdn_over = false;
  bool date_seen = false, expires_seen = false, lm_seen = false, age_seen = false;
  for (const Field& h : fields) {
    const std::string_view n = h.name;
    if (ieq(n, "cache-control")) {
      if (ncc < cc.size())
        cc[ncc++] = h.value;
      else
        cc_over = true;
    } else if (ieq(n, "cdn-cache-control")) {
      if (ncdn < cdn.size())
        cdn[ncdn++] = h.value;
      else
        cdn_over = true;
    } else if (ieq(n, "date")) {
      read_date(h.value, date_seen, f.date);
    } else if (ieq(n, "expires")) {
      read_date(h.value, expires_seen, f.expires);
    } else if (ieq(n, "last-modified")) {
      read_date(h.value, lm_seen, f.last_modified);
    } else if (ieq(n, "age")) {
      if (!age_seen) {
        const Seconds s = parse_delta_seconds(h.value);
        f.age = s.valid() ? s.value : 0;  // an invalid Age is ignored
      }
      age_seen = true;
    } else if (ieq(n, "etag")) {
      f.has_validator = true;
    }
  }
  f.has_validator |= f.last_modified.has_value();
  const TargetedDirectives t = parse_cdn_cache_control(std::span(cdn.data(), ncdn));
  if (t.valid) {
    f.cc = t.directives;
    f.cc.truncated |= cdn_over;
    f.targeted = true;  // RFC 9213 2.2: Cache-Control and Expires ignored
    f.expires.reset();
  } else {
    f.cc = parse_response_cache_control(std::span(cc.data(), ncc));
    f.cc.truncated |= cc_over;
    f.has_expires = expires_seen;
  }
  return f;
}

RequestFacts request_facts(http::Method method, std::span<const Field> fields) {
  RequestFacts r;
  r.method = method;
  std::array<std::string_view, kMaxDirectiveLines> cc{};
  size_t ncc = 0;
  bool over = false;
  for (const Field& h : fields) {
    if (ieq(h.name, "cache-control")) {
      if (ncc < cc.size())
        cc[ncc++] = h.value;
      else
        over = true;
    } else if (ieq(h.name, "authorization")) {
      r.authorization = true;
    }
  }
  r.cc = parse_request_cache_control(std::span(cc.data(), ncc));
  r.cc.truncated |= over;
  return r;
}

Storable storable(const RequestFacts& req, const ResponseFacts& res) {
  const ResponseDirectives& d = res.cc;
  if (req.method != http::Method::Get) return Storable::NotGet;
  if (d.truncated || req.cc.truncated) return Storable::TooManyDirectives;
  if (res.status < 200 || res.status == 206 || res.status == 304) return Storable::Status;
  if (d.must_understand) {
    // 5.2.2.3: only a cache that understands the status may store; it then ignores no-store.
    if (!status_understood(res.status)) return Storable::Status;
  } else if (d.no_store) {
    return Storable::NoStore;
  }
  if (req.cc.no_store) return Storable::NoStore;
  if (d.private_) return Storable::Private;
  if (req.authorization && !(d.public_ || d.must_revalidate || d.s_maxage.present()))
    return Storable::Authorization;
  if (!(d.public_ || d.s_maxage.present() || d.max_age.present() || res.has_expires ||
        heuristically_cacheable(res.status)))
    return Storable::NotCacheable;
  return Storable::Yes;
}

std::string_view to_string(Storable s) {
  switch (s) {
    case Storable::Yes:
      return "storable";
    case Storable::NotGet:
      return "method";
    case Storable::Status:
      return "status";
    case Storable::NoStore:
      return "no-store";
    case Storable::Private:
      return "private";
    case Storable::Authorization:
      return "authorization";
    case Storable::NotCacheable:
      return "not-cacheable";
    case Storable::TooManyDirectives:
      return "too-many-directives";
  }
  return "?";
}

bool worth_storing(const ResponseFacts& res, int64_t heuristic_cap) {
  const ResponseDirectives& d = res.cc;
  return freshness_lifetime(res, heuristic_cap).seconds > 0 || res.has_validator ||
         (d.stale_while_revalidate.valid() && d.stale_while_revalidate.value > 0) ||
         (d.stale_if_error.valid() && d.stale_if_error.value > 0);
}

Lifetime freshness_lifetime(const ResponseFacts& res, int64_t heuristic_cap) {
  const ResponseDirectives& d = res.cc;
  // 4.2.1: the first present of s-maxage (shared caches), max-age, Expires decides; an invalid
  // value makes the response stale (4.2.1 last paragraph, 5.3 for Expires).
  if (d.s_maxage.present()) return {d.s_maxage.valid() ? d.s_maxage.value : 0, false};
  if (d.max_age.present()) return {d.max_age.valid() ? d.max_age.value : 0, false};
  const int64_t date = res.date.value_or(res.response_time);
  if (res.has_expires) return {res.expires ? clamp31(*res.expires - date) : 0, false};
  // 4.2.2: heuristic, for heuristically cacheable statuses or public (5.2.2.9) responses.
  if (!(heuristically_cacheable(res.status) || d.public_) || !res.last_modified) return {0, false};
  const int64_t since = clamp31(date - *res.last_modified);
  if (since == 0) return {0, false};
  return {std::min(since * kHeuristicPercent / 100, clamp31(heuristic_cap)), true};
}

int64_t current_age(const ResponseFacts& res, int64_t now) {
  const int64_t date_value = res.date.value_or(res.response_time);
  const int64_t apparent_age = clamp31(res.response_time - date_value);
  const int64_t response_delay = clamp31(res.response_time - res.request_time);
  const int64_t corrected_age_value = clamp31(int64_t{res.age} + response_delay);
  const int64_t corrected_initial_age = std::max(apparent_age, corrected_age_value);
  const int64_t resident_time = clamp31(now - res.response_time);
  return clamp31(corrected_initial_age + resident_time);
}

std::string_view to_string(Serve s) {
  switch (s) {
    case Serve::Fresh:
      return "fresh";
    case Serve::Stale:
      return "stale";
    case Serve::StaleWhileRevalidate:
      return "stale-while-revalidate";
    case Serve::Revalidate:
      return "revalidate";
    case Serve::GatewayTimeout:
      return "gateway-timeout";
  }
  return "?";
}

ServeDecision decide(const RequestDirectives& req, const ResponseFacts& res, int64_t now,
                     int64_t heuristic_cap) {
  const ResponseDirectives& d = res.cc;
  ServeDecision r;
  r.lifetime = freshness_lifetime(res, heuristic_cap).seconds;
  r.age = current_age(res, now);
  r.staleness = std::max<int64_t>(0, r.age - r.lifetime);

  // 4.2.4, 5.2.2.2, 5.2.2.8, 5.2.2.10: never a stale answer; 5.2.2.4: never one unvalidated.
  const bool forbid_stale =
      d.must_revalidate || d.proxy_revalidate || d.s_maxage.present() || d.no_cache;
  const bool fresh = r.age < r.lifetime;
  // 5.2.1.1: an invalid request max-age is read as 0 (the more restrictive reading).
  const bool age_ok =
      !req.max_age.present() || r.age <= (req.max_age.valid() ? int64_t{req.max_age.value} : 0);
  // 5.2.1.3: an invalid min-fresh is ignored.
  const int64_t min_fresh = req.min_fresh.valid() ? req.min_fresh.value : 0;

  if (d.no_cache || req.no_cache) {
    r.serve = Serve::Revalidate;
  } else if (fresh) {
    r.serve = age_ok && r.lifetime >= r.age + min_fresh ? Serve::Fresh : Serve::Revalidate;
  } else if (forbid_stale || !age_ok) {
    r.serve = Serve::Revalidate;
  } else if (req.max_stale_any || (req.max_stale.valid() && r.staleness <= req.max_stale.value)) {
    r.serve = Serve::Stale;
  } else if (d.stale_while_revalidate.valid() && r.staleness <= d.stale_while_revalidate.value &&
             !req.min_fresh.present()) {
    r.serve = Serve::StaleWhileRevalidate;
  } else {
    r.serve = Serve::Revalidate;
  }
  if (req.only_if_cached && r.serve == Serve::Revalidate) r.serve = Serve::GatewayTimeout;

  r.stale_if_error =
      !forbid_stale && ((d.stale_if_error.valid() && r.staleness <= d.stale_if_error.value) ||
                        (req.stale_if_error.valid() && r.staleness <= req.stale_if_error.value));
  return r;
}

bool is_stale_if_error_status(uint16_t status) {
  return status == 500 || status == 502 || status == 503 || status == 504;
}

bool invalidates(http::Method method, uint16_t status) {
  switch (method) {
    case http::Method::Get:
    case http::Method::Head:
    case http::Method::Options:
    case http::Method::Trace:
      return false;
    default:
      return status >= 200 && status < 400;
  }
}

namespace {

// RFC 3986 5.2.4.
std::string remove_dot_segments(std::string_view in) {
  std::string out;
  const auto pop_segment = [&out] {
    const size_t slash = out.rfind('/');
    out.resize(slash == std::string::npos ? 0 : slash);
  };
  while (!in.empty()) {
    if (in.starts_with("../")) {
      in.remove_prefix(3);
    } else if (in.starts_with("./") || in.starts_with("/./")) {
      in.remove_prefix(2);
    } else if (in == "/.") {
      in = "/";
    } else if (in.starts_with("/../")) {
      in.remove_prefix(3);
      pop_segment();
    } else if (in == "/..") {
      in = "/";
      pop_segment();
    } else if (in == "." || in == "..") {
      in = {};
    } else {
      size_t next = in.find('/', 1);
      if (next == std::string_view::npos) next = in.size();
      out.append(in.substr(0, next));
      in.remove_prefix(next);
    }
  }
  return out;
}

struct Origin {
  std::string_view scheme, host;
  int port = -1;  // -1: none or invalid
  bool ok = false;
};

int default_port(std::string_view scheme) {
  if (ieq(scheme, "http")) return 80;
  if (ieq(scheme, "https")) return 443;
  return -1;
}

// "host[:port]" (no userinfo: a reference with one is left out).
Origin parse_authority(std::string_view scheme, std::string_view auth) {
  Origin o;
  o.scheme = scheme;
  if (auth.empty() || auth.find('@') != std::string_view::npos) return o;
  size_t host_end = auth.size();
  if (auth.front() == '[') {
    host_end = auth.find(']');
    if (host_end == std::string_view::npos) return o;
    ++host_end;
  } else {
    const size_t colon = auth.find(':');
    if (colon != std::string_view::npos) host_end = colon;
  }
  o.host = auth.substr(0, host_end);
  std::string_view port = auth.substr(host_end);
  o.port = default_port(scheme);
  if (!port.empty()) {
    if (port.front() != ':') return o;
    port.remove_prefix(1);
    if (!port.empty()) {
      const Seconds p = parse_delta_seconds(port);  // 1*DIGIT
      if (!p.valid() || p.value > 65535) return o;
      o.port = int(p.value);
    }
  }
  o.ok = !o.host.empty();
  return o;
}

bool same_origin(const Origin& a, const Origin& b) {
  return a.ok && b.ok && ieq(a.scheme, b.scheme) && ieq(a.host, b.host) && a.port == b.port;
}

// RFC 3986 3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
bool is_scheme(std::string_view s) {
  const auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (s.empty() || !alpha(s[0])) return false;
  for (char c : s)
    if (!(alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.')) return false;
  return true;
}

// The key of `ref` resolved against origin + target (RFC 3986 5.2.2), or "" when it is not a
// same-origin URI.
std::string resolve(const Origin& base, std::string_view origin, std::string_view target,
                    std::string_view ref) {
  ref = ref.substr(0, ref.find('#'));
  const size_t colon = ref.find(':');
  const size_t first_delim = ref.find_first_of("/?");
  if (colon != std::string_view::npos && colon < first_delim && is_scheme(ref.substr(0, colon))) {
    const std::string_view scheme = ref.substr(0, colon);
    ref.remove_prefix(colon + 1);
    if (!ref.starts_with("//")) return {};
    ref.remove_prefix(2);
    const size_t end = std::min(ref.find_first_of("/?"), ref.size());
    if (!same_origin(base, parse_authority(scheme, ref.substr(0, end)))) return {};
    ref.remove_prefix(end);
  } else if (ref.starts_with("//")) {
    ref.remove_prefix(2);
    const size_t end = std::min(ref.find_first_of("/?"), ref.size());
    if (!same_origin(base, parse_authority(base.scheme, ref.substr(0, end)))) return {};
    ref.remove_prefix(end);
  } else if (!ref.starts_with("/")) {
    // Relative path (or only a query): merge with the target's path (5.2.3).
    const std::string_view base_path = target.substr(0, target.find('?'));
    if (ref.empty() || ref.front() == '?') {
      std::string key(origin);
      key.append(base_path.empty() ? "/" : base_path)
          .append(ref.empty() ? target.substr(base_path.size()) : ref);
      return key;
    }
    const size_t slash = base_path.rfind('/');
    std::string merged(slash == std::string_view::npos ? "/" : base_path.substr(0, slash + 1));
    merged.append(ref);
    const size_t q = merged.find('?');
    std::string key(origin);
    key.append(remove_dot_segments(std::string_view(merged).substr(0, q)));
    if (q != std::string::npos) key.append(std::string_view(merged).substr(q));
    return key;
  }
  // ref is now an absolute path and query (possibly empty).
  const size_t q = std::min(ref.find('?'), ref.size());
  std::string path = remove_dot_segments(ref.substr(0, q));
  if (path.empty() || path.front() != '/') path.insert(path.begin(), '/');
  std::string key(origin);
  key.append(path).append(ref.substr(q));
  return key;
}

}  // namespace

InvalidationTargets invalidation_targets(std::string_view origin, std::string_view target,
                                         std::string_view location,
                                         std::string_view content_location) {
  InvalidationTargets t;
  std::string self(origin);
  self.append(target);
  t.uris[t.count++] = std::move(self);
  const size_t sep = origin.find("://");
  if (sep == std::string_view::npos) return t;
  const Origin base = parse_authority(origin.substr(0, sep), origin.substr(sep + 3));
  for (std::string_view ref : {location, content_location}) {
    ref = http::chars::trim_ows(ref);
    if (ref.empty()) continue;
    std::string key = resolve(base, origin, target, ref);
    if (key.empty()) continue;
    if (std::find(t.uris.begin(), t.uris.begin() + t.count, key) != t.uris.begin() + t.count)
      continue;
    t.uris[t.count++] = std::move(key);
  }
  return t;
}

bool keep_when_storing(std::string_view name, const http::HopByHop& hop) {
  return !hop(name) && !ieq(name, "proxy-authenticate") &&
         !ieq(name, "proxy-authentication-info") && !ieq(name, "proxy-authorization");
}

void fields_to_store(std::span<const Field> fields, std::vector<Field>& out) {
  const http::HopByHop hop(fields);
  for (const Field& f : fields)
    if (keep_when_storing(f.name, hop)) out.push_back(f);
}

bool updated_by_304(std::string_view name, const http::HopByHop& update_hop) {
  return keep_when_storing(name, update_hop) && !ieq(name, "content-length") &&
         !ieq(name, "content-encoding") && !ieq(name, "content-range") && !ieq(name, "vary");
}

void merge_304_fields(std::span<const Field> stored, std::span<const Field> update,
                      std::vector<Field>& out) {
  const http::HopByHop hop(update);
  for (const Field& s : stored) {
    bool replaced = false;
    for (const Field& u : update) {
      if (ieq(u.name, s.name)) {
        replaced = updated_by_304(u.name, hop);
        break;
      }
    }
    if (!replaced) out.push_back(s);
  }
  for (const Field& u : update)
    if (updated_by_304(u.name, hop)) out.push_back(u);
}

}  // namespace weir::cache
