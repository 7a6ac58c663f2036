// A route's `cache:` (edge.md "Cache", RFC 9111 as a shared cache), on the exchange:
//
//   request ─ GET/HEAD: lookup ─┬─ fresh (or max-stale allows): answered from the entry
//                               │    (client conditionals → 304/412, Range → 206/416, HEAD)
//                               ├─ stale: forwarded with the entry's validators; 304 → the
//                               │    entry updated and answered; an error → stale-if-error
//                               └─ miss: forwarded; a storable answer is kept as it streams
//                                    to this client (the body is teed, never held back)
//           unsafe methods: forwarded; a 2xx/3xx invalidates the URI (and Location /
//           Content-Location of the same origin).
//
// The store (cache/store.hpp) is shared by every worker; an entry is immutable and held by the
// exchange while its body goes out, so eviction or a purge never cuts an answer short.
#include <chrono>

#include "proxy/exchange_cache.hpp"

#include "core/log.hpp"
#include "http/conditional.hpp"
#include "http/date.hpp"
#include "proxy/background.hpp"
#include "proxy/exchange.hpp"

namespace weir::proxy {

namespace {

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// `fields` copied into `text`, with `views` pointing into the copy.
void copy_fields(std::span<const http::Header> fields, std::string& text,
                 std::vector<http::Header>& views) {
  size_t total = 0;
  for (const auto& f : fields)
    total += f.name.size() + f.value.size();
  text.clear();
  text.reserve(total);  // no reallocation below: the views stay valid
  views.clear();
  for (const auto& f : fields) {
    size_t n = text.size();
    text.append(f.name);
    size_t v = text.size();
    text.append(f.value);
    views.push_back({std::string_view(text).substr(n, f.name.size()),
                     std::string_view(text).substr(v, f.value.size())});
  }
}

std::optional<std::string_view> header_of(std::span<const http::Header> fields,
                                          std::string_view name) {
  for (const auto& f : fields)
    if (http::iequals(f.name, name)) return f.value;
  return std::nullopt;
}

}  // namespace

// Before the request goes anywhere. False: answered from the store.
bool Exchange::cache_begin(const http::RequestHead& req, const config::Route& r,
                           std::string_view host, std::string_view target) {
  if (!cache_) cache_ = std::make_unique<CacheState>();
  CacheState& cs = *cache_;
  cs.clear();
  cs.store = view_->snap->caches[r.cache_index].get();
  // The effective request URI (RFC 9110 7.1): the authority as the client gave it (port
  // included), lower-cased; `host` (without port) is only the fallback.
  std::string_view authority = req.authority.empty() ? req.host : req.authority;
  if (authority.empty()) authority = host;
  cs.primary.assign(ds_->client().tls ? "https://" : "http://");
  for (char c : authority)
    cs.primary.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  cs.primary.append(target);
  const bool safe = req.method == http::Method::Get || req.method == http::Method::Head;
  if (!safe) {
    cs.invalidate = req.method != http::Method::Options && req.method != http::Method::Trace;
    caching_ = cs.invalidate;
    return true;
  }
  caching_ = true;
  cs.request_time = unix_now();
  copy_fields(req.headers, cs.request_text, cs.request_fields);
  cs.request = cache::request_facts(req.method, cs.request_fields);
  cache::Store::Lookup found = cs.store->lookup(cs.primary, cs.request_fields);
  if (found.bypass) {
    caching_ = false;
    return true;
  }
  cs.secondary = std::move(found.secondary);
  if (!found.entry) {
    cs.forward = "uri-miss";
    if (cs.request.cc.only_if_cached) {
      only_if_cached_miss();
      return false;
    }
    if (req.body == http::BodyKind::None) cache_acquire();
    return true;
  }
  if (background_) {
    // The revalidation a stale-while-revalidate answer started: one at a time per key.
    cache::Store::Acquire a = cs.store->acquire_fill(cs.primary, cs.secondary, {});
    if (a.kind == cache::Store::Acquire::Kind::Wait) {
      cs.store->cancel_wait(a.token);
      caching_ = false;
      answer(204, {});  // to no one: another request is on it
      return false;
    }
    cs.ticket = std::move(a.ticket);
    cs.have_ticket = true;
    cs.stale = std::move(found.entry);
    cs.forward = "stale";
    return true;
  }
  cache::ServeDecision d = cache::decide(cs.request.cc, found.entry->facts(), cs.request_time);
  switch (d.serve) {
    case cache::Serve::Fresh:
      answer_from_entry(found.entry, d.age, "weir; hit");
      return false;
    case cache::Serve::Stale:
      answer_from_entry(found.entry, d.age, "weir; hit; detail=stale");
      return false;
    case cache::Serve::StaleWhileRevalidate:
      // Stale now, fresh for the next ones (RFC 5861 3). Beyond the worker's bound the entry
      // stays stale until a revalidation ends (a flood of stale hits starts no flood of work).
      if (w_.background().size() < kMaxBackgroundPerWorker)
        start_background_revalidation(w_, ds_->client(), authority, target, cs.request_fields);
      answer_from_entry(found.entry, d.age, "weir; hit; detail=stale-while-revalidate");
      return false;
    case cache::Serve::GatewayTimeout:
      only_if_cached_miss();
      return false;
    case cache::Serve::Revalidate:
      break;
  }
  // Ask the server whether the stored response is still good (RFC 9111 4.3.1).
  cs.stale = std::move(found.entry);
  cs.stale_if_error = d.stale_if_error;
  cs.stale_age = d.age;
  cs.forward = cs.request.cc.no_cache ? "request" : "stale";
  return true;
}

// The forwarded head of a revalidation carries the stored validators (they replace the
// client's: the answer to the client is worked out from the updated entry).
void Exchange::cache_edit_request(HeaderEdits& e) {
  const CacheState& cs = *cache_;
  if (!cs.stale) return;
  // Only the entry's validators: a 304 to the client's own would not say the entry is current.
  bool has_etag = false;
  std::string_view etag = cs.stale->field("ETag", &has_etag);
  if (has_etag) {
    e.set("If-None-Match", etag);
  } else {
    e.remove("If-None-Match");
  }
  bool has_lm = false;
  std::string_view lm = cs.stale->field("Last-Modified", &has_lm);
  if (has_lm) {
    e.set("If-Modified-Since", lm);
  } else {
    e.remove("If-Modified-Since");
  }
  e.remove("If-Match");
  e.remove("If-Unmodified-Since");
  e.remove("If-Range");
  e.remove("Range");
}

// The server's final head, before the filters. True: the exchange answered from the store
// instead (a 304 to a revalidation, or an error with stale-if-error) and this head is consumed.
bool Exchange::cache_on_head(const http::ResponseHead& resp, size_t head_len) {
  CacheState& cs = *cache_;
  const int64_t now = unix_now();
  if (cs.invalidate) {
    if (cache::invalidates(method_, resp.status)) {
      size_t scheme_end = cs.primary.find("://");
      size_t path = cs.primary.find('/', scheme_end + 3);
      std::string_view origin = std::string_view(cs.primary).substr(0, path);
      std::string_view target = std::string_view(cs.primary).substr(path);
      auto targets = cache::invalidation_targets(
          origin, target, header_of(resp.headers, "location").value_or(""),
          header_of(resp.headers, "content-location").value_or(""));
      for (uint8_t i = 0; i < targets.count; ++i)
        cs.store->invalidate(targets.uris[i]);
    }
    return false;
  }
  if (cs.stale && resp.status == 304) {
    auto updated = cs.store->update(cs.primary, cs.stale, resp.headers, cs.request_time, now);
    up_->stream.in.consume(head_len);
    resp_keep_alive_ = resp.keep_alive;
    release_upstream(resp.keep_alive && req_done_);
    answer_from_entry(updated.entry, 0, "weir; fwd=stale; fwd-status=304");
    return true;
  }
  if (cs.stale && cs.stale_if_error && cache::is_stale_if_error_status(resp.status)) {
    up_->stream.in.consume(head_len);
    release_upstream(false);
    answer_from_entry(
        cs.stale, cs.stale_age,
        "weir; fwd=stale; fwd-status=" + std::to_string(resp.status) + "; detail=stale-if-error");
    return true;
  }
  // From here on, returning false without `filling` lets the waiters go to the server now.
  struct AbandonUnlessFilling {
    CacheState& cs;
    ~AbandonUnlessFilling() {
      if (!cs.filling && cs.have_ticket) {
        cs.ticket.abandon();
        cs.have_ticket = false;
      }
    }
  } abandon_unless_filling{cs};
  if (method_ != http::Method::Get || resp.body == http::BodyKind::UntilClose) return false;
  copy_fields(resp.headers, cs.response_text, cs.response_fields);
  cs.response = cache::response_facts(resp.status, cs.response_fields, cs.request_time, now);
  if (cache::storable(cs.request, cs.response) != cache::Storable::Yes ||
      !cache::worth_storing(cs.response))
    return false;
  if (resp.body == http::BodyKind::ContentLength && resp.content_length > cs.store->max_object())
    return false;
  // A Set-Cookie is one client's: replayed to others it would hand them a session (RFC 9111 7,
  // RFC 6265 8.3). Never stored, as NGINX and Varnish do by default.
  if (header_of(cs.response_fields, "set-cookie")) return false;
  std::string& vary_names = w_.scratch_string();  // only to decide: the store keys it again
  if (!cache::vary_storable(cache::parse_vary(cs.response_fields, vary_names))) return false;
  if (!cs.have_ticket) {
    cache::Store::Acquire a = cs.store->acquire_fill(cs.primary, cs.secondary, {});
    if (a.kind == cache::Store::Acquire::Kind::Wait) {
      cs.store->cancel_wait(a.token);  // someone else stores it
      return false;
    }
    cs.ticket = std::move(a.ticket);
    cs.have_ticket = true;
  }
  if (resp.body == http::BodyKind::ContentLength && !cs.ticket.expect(resp.content_length))
    return false;
  cs.filling = true;
  return false;
}

// The head's cache fields, after the filters: CDN-Cache-Control is for weir alone (RFC 9213),
// Cache-Status says what weir did (RFC 9211).
void Exchange::cache_edit_response(HeaderEdits& e, uint16_t status) {
  const CacheState& cs = *cache_;
  e.remove("CDN-Cache-Control");
  if (cs.invalidate) {
    e.add("Cache-Status", "weir; fwd=method");
    return;
  }
  std::string& v = w_.scratch_string();
  v.assign("weir; fwd=").append(cs.forward.empty() ? "miss" : cs.forward);
  if (cs.stale) v.append("; fwd-status=").append(std::to_string(status));
  if (cs.filling) v.append("; stored");
  e.add("Cache-Status", v);
}

// only-if-cached and nothing usable stored: 504 (RFC 9111 5.2.1.7), without asking anyone.
void Exchange::only_if_cached_miss() {
  caching_ = false;
  edits_.clear();
  edits_.add("Cache-Status", "weir; detail=only-if-cached");
  answer(504, "Gateway Timeout\n");
}

bool Exchange::cache_store_filling() const {
  return cache_->filling;
}

// Body bytes on their way to the client: a copy for the store.
void Exchange::cache_keep(std::string_view payload) {
  if (!cache_->filling || payload.empty()) return;
  if (!cache_->ticket.append(payload)) cache_->filling = false;  // too large: passes through
}

// The response is complete: publish it.
void Exchange::cache_publish() {
  if (!cache_->filling) return;
  CacheState& cs = *cache_;
  cs.filling = false;
  auto result = cs.ticket.commit(cs.response, cs.response_fields, cs.request_fields);
  if (result != cache::CommitResult::Stored)
    log::debug("cache: {} not stored ({})", cs.primary, static_cast<int>(result));
}

// A miss: become the request that fills the key, or wait for the one that does.
void Exchange::cache_acquire() {
  CacheState& cs = *cache_;
  auto waiter = std::make_shared<CacheWaiter>();
  Reactor* reactor = &w_.reactor();
  cache::Store::Acquire a =
      cs.store->acquire_fill(cs.primary, cs.secondary, [waiter, reactor](cache::WaitResult result) {
        reactor->post([waiter, result] {
          if (waiter->exchange) waiter->exchange->on_cache_wake(result);
        });
      });
  if (a.kind == cache::Store::Acquire::Kind::Wait) {
    waiter->exchange = this;
    cs.waiter = std::move(waiter);
    cs.wait_token = a.token;
    return;
  }
  cs.ticket = std::move(a.ticket);
  cs.have_ticket = true;
}

// Called where the request would go to a server. True: it waits for another request's
// response to the same key instead (bounded by the backend's response timeout).
bool Exchange::cache_wait() {
  if (!caching_ || !cache_->waiter) return false;
  phase_ = Phase::Coalescing;
  timer_kind_ = TimerKind::Coalesce;
  timer_.set(w_.reactor().timers(), w_.reactor().now() + backend().cfg->timeouts.response);
  return true;
}

// Stops waiting (the wake came, the time is up, or the client left).
void Exchange::cache_stop_waiting() {
  CacheState& cs = *cache_;
  if (!cs.waiter) return;
  cs.waiter->exchange = nullptr;
  cs.store->cancel_wait(cs.wait_token);  // false: the post is on its way and will find null
  cs.waiter.reset();
}

void Exchange::on_cache_wake(cache::WaitResult result) {
  if (phase_ != Phase::Coalescing || !caching_) return;
  CacheState& cs = *cache_;
  cache_stop_waiting();
  timer_.clear();
  timer_kind_ = TimerKind::None;
  phase_ = Phase::Upstream;
  if (result == cache::WaitResult::Completed) {
    cache::Store::Lookup found = cs.store->lookup(cs.primary, cs.request_fields);
    if (found.entry) {
      cache::ServeDecision d = cache::decide(cs.request.cc, found.entry->facts(), unix_now());
      if (d.serve == cache::Serve::Fresh || d.serve == cache::Serve::Stale) {
        answer_from_entry(found.entry, d.age, "weir; hit; detail=coalesced");
        ds_->wake();
        return;
      }
    }
    if (!found.bypass && !cs.waited) {
      // Another variant was stored: this one may be filled (or waited for) in turn.
      cs.waited = true;
      cs.secondary = std::move(found.secondary);
      cache_acquire();
      if (cache_wait()) return;
    }
  }
  start_attempt();
  ds_->wake();
}

void Exchange::on_coalesce_timeout() {
  cache_stop_waiting();
  phase_ = Phase::Upstream;
  start_attempt();
}

void Exchange::cache_drop() {
  cache_stop_waiting();
  cache_->clear();  // an unfinished fill is abandoned: its waiters go to the server
}

// The server could not be reached or failed: a stale entry that allows it answers instead.
bool Exchange::cache_serve_stale(uint16_t status) {
  CacheState& cs = *cache_;
  if (!cs.stale || !cs.stale_if_error || !cache::is_stale_if_error_status(status)) return false;
  auto entry = cs.stale;
  answer_from_entry(entry, cs.stale_age,
                    "weir; fwd=stale; detail=stale-if-error; fwd-status=" + std::to_string(status));
  return true;
}

// An answer from a stored response: the client's conditionals and Range are worked out against
// it (RFC 9111 4.3.2, RFC 9110 13, 14); Age and Cache-Status added.
void Exchange::answer_from_entry(std::shared_ptr<const cache::Entry> entry, int64_t age,
                                 std::string_view status_text) {
  CacheState& cs = *cache_;
  caching_ = false;
  cs.filling = false;
  leave_queue();
  timer_.clear();
  timer_kind_ = TimerKind::None;
  const http::ConditionalHeaders cond = http::conditional_headers(cs.request_fields);
  http::Validators v;
  bool has_etag = false;
  std::string_view etag = entry->field("ETag", &has_etag);
  if (has_etag) v.etag = etag;
  v.last_modified = entry->facts().last_modified;
  std::string_view body = entry->body();
  uint16_t status = entry->status();
  std::string content_range;
  edits_.clear();
  if (status == 200) {
    switch (http::evaluate_preconditions(cond, v, method_)) {
      case http::Precondition::NotModified:
        status = 304;
        body = {};
        break;
      case http::Precondition::PreconditionFailed:
        cache_release();
        edits_.add("Cache-Status", status_text);
        answer(412, "Precondition Failed\n");
        return;
      case http::Precondition::Proceed: {
        http::ByteRange range = http::evaluate_range(cond, v, method_, body.size(), unix_now());
        if (range.kind == http::RangeKind::Satisfiable) {
          status = 206;
          http::format_content_range(range.offset, range.length, body.size(), content_range);
          body = body.substr(range.offset, range.length);
        } else if (range.kind == http::RangeKind::Unsatisfiable) {
          http::format_unsatisfied_range(body.size(), content_range);
          edits_.set("Content-Range", content_range);
          edits_.add("Cache-Status", status_text);
          cache_release();
          answer(416, "Range Not Satisfiable\n");
          return;
        }
        break;
      }
    }
  }
  ResponseOut head;
  head.status = status;
  head.fields = entry->fields();
  head.body = status == 304 ? http::BodyKind::None : http::BodyKind::ContentLength;
  head.content_length = body.size();
  head.edits = &edits_;
  edits_.remove("CDN-Cache-Control");
  edits_.set("Age", std::to_string(age));
  if (status == 206) edits_.set("Content-Range", content_range);
  if (filters_) filters_->on_response(head);
  edits_.add("Cache-Status", status_text);
  if (method_ != http::Method::Head && status != 304) {
    mem_entry_ = std::move(entry);
    mem_ = body;
    // Compression applies to stored responses as to the server's (the store keeps them as the
    // server sent them, so each client gets its own coding).
    body_filter_.reset();
    if (status == 200 && filters_ && !mem_.empty())
      body_filter_ = filters_->on_response_body(head, RequestFacts{method_, accept_encoding_});
    if (body_filter_) {
      edits_.remove("Content-Length");
      head.body = http::BodyKind::Chunked;
      w_.buffers().acquire(filtered_);
      filtered_.clear();
      filter_done_ = false;
    }
  }
  cs.stale.reset();
  send_local_head(head);
}

}  // namespace weir::proxy
