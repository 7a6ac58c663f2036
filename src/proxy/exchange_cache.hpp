#pragma once
// What an exchange keeps of a request on a `cache:` route (exchange_cache.cpp).
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cache/store.hpp"
#include "http/parser.hpp"

namespace weir::proxy {

class Exchange;

// A request waiting for another's response to the same key (coalescing). The store's callback
// runs on the filler's thread and posts to the waiter's worker; the exchange may be gone or
// reused by then, so the post holds this and finds `exchange` null once it gave up.
struct CacheWaiter {
  Exchange* exchange = nullptr;  // touched on the waiter's worker thread only
};

// What the exchange keeps of a cached request (kept in the pool with its capacity).
struct CacheState {
  cache::Store* store = nullptr;
  std::string primary;       // "http://host/path?query"
  std::string secondary;     // the request's variant key under the URI's Vary
  std::string request_text;  // the request's fields, copied (views below)
  std::vector<http::Header> request_fields;
  cache::RequestFacts request;
  int64_t request_time = 0;
  std::shared_ptr<const cache::Entry> stale;  // the stored response being revalidated
  bool stale_if_error = false;                // ... which may answer if the server fails
  int64_t stale_age = 0;
  bool invalidate = false;   // an unsafe method: invalidate on a 2xx/3xx answer
  std::string_view forward;  // Cache-Status fwd= of a forwarded request
  cache::FillTicket ticket;  // the response being stored
  bool filling = false;
  bool have_ticket = false;             // `ticket` was acquired on the miss (this request fills)
  std::shared_ptr<CacheWaiter> waiter;  // set while waiting for another request's fill
  cache::WaitToken wait_token;
  bool waited = false;        // waited once already: a second miss goes to the server
  std::string response_text;  // the response's fields, copied for the commit
  std::vector<http::Header> response_fields;
  cache::ResponseFacts response;

  void clear() {
    store = nullptr;
    stale.reset();
    stale_if_error = false;
    invalidate = false;
    forward = {};
    ticket = {};
    filling = false;
    have_ticket = false;
    waited = false;
  }
};

}  // namespace weir::proxy
