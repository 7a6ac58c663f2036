// The built-in filters and the chains a listener's config makes of them.
#include <algorithm>
#include <chrono>
#include <string>

#include "config/config.hpp"
#include "core/log.hpp"
#include "net/address.hpp"
#include "proxy/compression.hpp"
#include "proxy/filter.hpp"
#include "proxy/static_files.hpp"

namespace weir::proxy {
namespace {

// redirect_https: every request on this plain listener gets 308 to the same URL over HTTPS.
class RedirectHttps final : public Filter {
 public:
  explicit RedirectHttps(uint16_t port) : port_(port) {}
  FilterStatus on_request(const RequestView& r, LocalAnswer& a) override {
    if (r.host.empty()) {
      a.status = 400;
      a.body = "Bad Request\n";
      a.close = true;
      return FilterStatus::Answered;
    }
    std::string& loc = scratch_;
    loc.assign("https://").append(r.host);
    if (port_ != 443) loc.append(":").append(std::to_string(port_));
    loc.append(r.target.empty() ? "/" : r.target);
    a.status = 308;
    a.body = "Permanent Redirect\n";
    a.edits->set("Location", loc);
    return FilterStatus::Answered;
  }

 private:
  uint16_t port_;
  std::string scratch_;  // one worker's filter: no sharing across threads
};

// tls.hsts: Strict-Transport-Security on every answer of a TLS listener.
class Hsts final : public Filter {
 public:
  explicit Hsts(config::Duration max_age)
      : value_("max-age=" +
               std::to_string(std::chrono::duration_cast<std::chrono::seconds>(max_age).count())) {}
  void on_response(ResponseOut& h) override { h.edits->set("Strict-Transport-Security", value_); }

 private:
  std::string value_;
};

// http3: Alt-Svc on every answer of the listener, naming each port it listens on (HTTP/3 is
// on the same port numbers, over UDP). Clients that can switch to HTTP/3 for a day.
class AltSvc final : public Filter {
 public:
  explicit AltSvc(const std::vector<std::string>& listen) {
    std::vector<uint16_t> ports;
    for (const auto& a : listen) {
      std::string host;
      uint16_t port = 0;
      if (net::split_host_port(a, host, port) &&
          std::find(ports.begin(), ports.end(), port) == ports.end())
        ports.push_back(port);
    }
    for (uint16_t p : ports)
      value_ += (value_.empty() ? "" : ", ") + ("h3=\":" + std::to_string(p) + "\"; ma=86400");
  }
  void on_response(ResponseOut& h) override {
    if (!value_.empty()) h.edits->set("Alt-Svc", value_);
  }

 private:
  std::string value_;
};

// hide_server_headers: what a server says about its software stays behind weir. Before the
// route's response_headers, which may still set such a field on purpose.
class HideServerHeaders final : public Filter {
 public:
  // Only the names the server sent are removed: one length check per received field, and no
  // edit at all for a server that names nothing (measured in bench s1: an edit per name cost
  // every response four removals and four comparisons per field).
  void on_response(ResponseOut& h) override {
    if (h.local) return;
    for (const auto& f : h.fields)
      if (names_software(f.name)) h.edits->remove(f.name);
  }

 private:
  static bool names_software(std::string_view n) {
    switch (n.size()) {
      case 6:
        return http::iequals(n, "Server");
      case 12:
        return http::iequals(n, "X-Powered-By");
      case 16:
        return http::iequals(n, "X-AspNet-Version");
      case 19:
        return http::iequals(n, "X-AspNetMvc-Version");
      default:
        return false;
    }
  }
};

// A route's request_headers / response_headers: remove, then set, then add.
class HeaderRulesFilter final : public Filter {
 public:
  explicit HeaderRulesFilter(const config::Route& route) : route_(route) {}
  void on_upstream_request(const RequestView&, HeaderEdits& e) override {
    apply(route_.request_headers, e);
  }
  void on_response(ResponseOut& h) override { apply(route_.response_headers, *h.edits); }

 private:
  static void apply(const config::HeaderRules& rules, HeaderEdits& e) {
    for (const auto& name : rules.remove)
      e.remove(name);
    for (const auto& [name, value] : rules.set)
      e.set(name, value);
    for (const auto& [name, value] : rules.add)
      e.add(name, value);
  }
  const config::Route& route_;
};

}  // namespace

ListenerFilters build_filters(const config::Listener& l) {
  ListenerFilters f;
  if (l.redirect_https != 0) f.owned.push_back(std::make_unique<RedirectHttps>(l.redirect_https));
  if (l.tls && l.tls->hsts) f.owned.push_back(std::make_unique<Hsts>(*l.tls->hsts));
  if (l.tls && l.http3) f.owned.push_back(std::make_unique<AltSvc>(l.listen));
  if (l.hide_server_headers) f.owned.push_back(std::make_unique<HideServerHeaders>());
  for (const auto& p : f.owned)
    f.listener.filters.push_back(p.get());
  // The listener's compression, made once for the routes that do not have their own. It is not
  // in the listener's own chain: weir's answers are never compressed.
  Filter* listener_compression = nullptr;
  if (l.compression && l.compression->enabled) {
    f.owned.push_back(make_compression_filter(*l.compression));
    listener_compression = f.owned.back().get();
  }
  for (const auto& route : l.routes) {
    FilterChain chain = f.listener;
    if (!route.request_headers.empty() || !route.response_headers.empty()) {
      f.owned.push_back(std::make_unique<HeaderRulesFilter>(route));
      chain.filters.push_back(f.owned.back().get());
    }
    // Last: it sees the head as the other filters left it (a Content-Type set by a rule).
    Filter* compression = listener_compression;
    if (route.compression) {
      compression = nullptr;
      if (route.compression->enabled) {
        f.owned.push_back(make_compression_filter(*route.compression));
        compression = f.owned.back().get();
      }
    }
    if (compression && route.forwards()) {
      chain.filters.push_back(compression);
      chain.body_filters = true;
    }
    f.routes.push_back(std::move(chain));
    std::shared_ptr<const StaticRoot> root;
    if (route.static_files) {
      const auto& st = *route.static_files;
      std::string error;
      if (auto r = StaticRoot::open(st.root, StaticOptions{st.index, st.precompressed}, error)) {
        root = std::make_shared<const StaticRoot>(std::move(*r));
      } else {
        log::error("listener {}: static root {}: {}; its requests get 500", l.name, st.root, error);
      }
    }
    f.static_roots.push_back(std::move(root));
  }
  return f;
}

}  // namespace weir::proxy
