#pragma once
// The seams of the request pipeline. A feature that changes what flows through weir (header
// rules, redirects, HSTS, later access lists, rate limits, compression, the cache) is a Filter
// with a few hooks, not a fork of the data path:
//
//   client codec ─▶ route ─▶ on_request ─▶ affinity/queue/pick ─▶ on_upstream_request ─▶ server
//   client codec ◀─ on_response_body ◀─ on_response ◀──────────────────────────────────── server
//
// on_request may answer locally (redirect, respond, 403/429): the exchange then never picks a
// server. on_response sees every final head, the server's and weir's own answers alike.
// on_response_body returns a per-response transform, or null to leave the body alone: when no
// filter takes a response's body, its bytes keep the zero-copy path to the client.
//
// Filters are built once per worker and snapshot (WorkerView), from the config, and shared by
// every exchange of that view: per-request state belongs in the exchange or a BodyFilter.
#include <memory>
#include <string_view>
#include <vector>

#include "core/buffer.hpp"
#include "http/parser.hpp"
#include "proxy/downstream.hpp"
#include "proxy/head_edits.hpp"

namespace weir::config {
struct Listener;
struct Route;
}  // namespace weir::config

namespace weir::proxy {

// A request as filters see it (views valid during the hook only).
struct RequestView {
  const http::RequestHead& head;
  std::string_view host;    // lower case, without port ("" if none)
  std::string_view target;  // origin-form
  std::string_view path;    // without query
  const ClientInfo& client;
};

// weir's own answer, filled by a filter that answers a request itself.
struct LocalAnswer {
  uint16_t status = 0;
  std::string_view body;         // must outlive the exchange's answer (config text or a literal)
  HeaderEdits* edits = nullptr;  // extra fields (Location, Retry-After, ...)
  bool close = false;            // the connection ends after this answer
};

enum class FilterStatus : uint8_t { Continue, Answered };

// What a body filter needs of the request once the response arrives (the request's own views
// are gone by then): copied by the exchange, only for routes whose chain has body filters.
struct RequestFacts {
  http::Method method = http::Method::Get;
  std::string_view accept_encoding;  // the values of every Accept-Encoding field, comma-joined
};

// A transform of one response's body (compression, later). Output goes into `out`, which is
// bounded (one buffer block): write what fits and report how much input was used; what was not
// used is offered again once `out` has been drained to the client. `end`: no input follows `in`
// (which is then empty); keep being called until done.
class BodyFilter {
 public:
  virtual ~BodyFilter() = default;
  struct Step {
    size_t used = 0;    // input bytes taken
    bool done = false;  // `end` was given and every output byte is in `out`
  };
  virtual Step on_body(std::string_view in, bool end, Buffer& out) = 0;
  // The transform cannot go on (e.g. out of memory): the response is aborted.
  virtual bool failed() const { return false; }
};

class Filter {
 public:
  virtual ~Filter() = default;
  virtual FilterStatus on_request(const RequestView&, LocalAnswer&) {
    return FilterStatus::Continue;
  }
  virtual void on_upstream_request(const RequestView&, HeaderEdits&) {}
  virtual void on_response(ResponseOut&) {}
  // A response with a body: a transform for it (it may edit the head, e.g. Content-Encoding),
  // or null. The exchange then sends the body with a length not known up front.
  virtual std::unique_ptr<BodyFilter> on_response_body(ResponseOut&, const RequestFacts&) {
    return nullptr;
  }
};

// The filters of one route: the listener's, then the route's own.
struct FilterChain {
  std::vector<Filter*> filters;
  bool body_filters = false;  // some filter may take a body (else the hook is never asked)

  FilterStatus on_request(const RequestView& r, LocalAnswer& a) const {
    for (Filter* f : filters)
      if (f->on_request(r, a) == FilterStatus::Answered) return FilterStatus::Answered;
    return FilterStatus::Continue;
  }
  void on_upstream_request(const RequestView& r, HeaderEdits& e) const {
    for (Filter* f : filters)
      f->on_upstream_request(r, e);
  }
  void on_response(ResponseOut& h) const {
    for (Filter* f : filters)
      f->on_response(h);
  }
  // The first filter that takes the body transforms it (one transform per response).
  std::unique_ptr<BodyFilter> on_response_body(ResponseOut& h, const RequestFacts& r) const {
    if (!body_filters) return nullptr;
    for (Filter* f : filters)
      if (auto b = f->on_response_body(h, r)) return b;
    return nullptr;
  }
};

class StaticRoot;

// Every filter of a listener, built from its config (filters.cpp): the chain for each of its
// routes, and the listener's own chain for answers given before any route matched.
struct ListenerFilters {
  std::vector<std::unique_ptr<Filter>> owned;
  FilterChain listener;             // listener-wide filters only
  std::vector<FilterChain> routes;  // by route index: listener-wide, then the route's
  // By route index: the directory of a `static` route, opened once per worker and snapshot
  // (null for other routes, or when it could not be opened: its requests get 500).
  std::vector<std::shared_ptr<const StaticRoot>> static_roots;
};
ListenerFilters build_filters(const config::Listener& listener);

}  // namespace weir::proxy
