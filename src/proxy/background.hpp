#pragma once
// A request weir makes on its own behalf, with no client: the background revalidation of a
// stale cache entry (stale-while-revalidate, RFC 5861 3). It runs a pooled Exchange like any
// request (route, balancing, retries, the cache's 304 handling and storing) behind a
// Downstream that discards the answer, then frees itself.
#include <cstddef>
#include <string>
#include <vector>

#include "http/parser.hpp"
#include "proxy/downstream.hpp"

namespace weir::proxy {

class Exchange;
class Worker;

// Background requests a worker runs at once at most (each holds a pooled exchange, a server
// slot and a copy of its request's fields).
inline constexpr size_t kMaxBackgroundPerWorker = 64;

// Starts `GET target` for the client `client` (its listener slot and address stand for it)
// with `fields` as the request's header fields (copied). Returns at once; at most one runs per
// cache key (the caller holds that right).
// Ends every background request of the worker (it is going away): their exchanges cancelled.
void abort_background(Worker& w);

void start_background_revalidation(Worker& w, const ClientInfo& client, std::string_view host,
                                   std::string_view target, std::span<const http::Header> fields);

}  // namespace weir::proxy
