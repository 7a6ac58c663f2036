// FillTicket and the fill table of a Store: who fills a key, who waits for it (store.hpp,
// "Coalescing").
#include <algorithm>
#include <cstring>

#include "cache/store.hpp"
#include "cache/store_shard.hpp"

namespace weir::cache {

using namespace store_detail;  // NOLINT(google-build-using-namespace)

// --- FillTicket ---

FillTicket::FillTicket(FillTicket&& o) noexcept
    : store_(o.store_),
      shard_(o.shard_),
      id_(o.id_),
      primary_(std::move(o.primary_)),
      body_(std::move(o.body_)),
      reserved_(o.reserved_),
      aborted_(o.aborted_) {
  o.store_ = nullptr;
  o.id_ = 0;
  o.reserved_ = 0;
}

FillTicket& FillTicket::operator=(FillTicket&& o) noexcept {
  if (this != &o) {
    abandon();
    store_ = o.store_;
    shard_ = o.shard_;
    id_ = o.id_;
    primary_ = std::move(o.primary_);
    body_ = std::move(o.body_);
    reserved_ = o.reserved_;
    aborted_ = o.aborted_;
    o.store_ = nullptr;
    o.id_ = 0;
    o.reserved_ = 0;
  }
  return *this;
}

FillTicket::~FillTicket() {
  abandon();
}

// Frees the body and its reservation, and tells the waiters to go to the server.
void FillTicket::release() {
  store_->release(reserved_);
  reserved_ = 0;
  std::string().swap(body_);
  if (id_ != 0) store_->finish_fill(shard_, id_, WaitResult::Abandoned);
  id_ = 0;
}

void FillTicket::abandon() {
  if (!store_) return;
  release();
  store_ = nullptr;
}

bool FillTicket::grow(size_t need) {
  if (!store_ || aborted_) return false;
  const size_t max = store_->config_.max_object;
  if (need > max) {
    aborted_ = true;
    release();
    return false;
  }
  if (need <= body_.capacity()) return true;
  // Double as std::string would, but within max_object, and count it before allocating.
  const size_t target = std::max(need, std::min(max, 2 * body_.capacity()));
  if (!store_->reserve(target - reserved_, shard_)) {
    aborted_ = true;
    release();
    return false;
  }
  reserved_ = target;
  body_.reserve(target);
  if (body_.capacity() > reserved_) {  // a library that rounds up more than asked
    if (!store_->reserve(body_.capacity() - reserved_, shard_)) {
      aborted_ = true;
      release();
      return false;
    }
    reserved_ = body_.capacity();
  }
  return true;
}

bool FillTicket::expect(size_t n) {
  return grow(n);
}

bool FillTicket::append(std::string_view bytes) {
  if (!grow(body_.size() + bytes.size())) return false;
  body_.append(bytes);
  return true;
}

CommitResult FillTicket::commit(const ResponseFacts& facts, std::span<const Field> response_fields,
                                std::span<const Field> request_fields) {
  if (!store_) return CommitResult::Aborted;
  if (aborted_) {
    abandon();
    return CommitResult::Aborted;
  }
  std::string names;
  const VaryKind vary_kind = parse_vary(response_fields, names);
  if (!vary_storable(vary_kind)) {
    abandon();
    return CommitResult::NotStorable;
  }
  std::string secondary;
  if (vary_kind == VaryKind::Names && !secondary_key(names, request_fields, secondary)) {
    abandon();
    return CommitResult::KeyTooLong;
  }
  std::vector<Field> keep;
  fields_to_store(response_fields, keep);
  // Give back the doubling slack (counted until the entry's own charge replaces it).
  if (body_.capacity() > body_.size() + body_.size() / 8 + 64) body_.shrink_to_fit();
  auto body = std::make_shared<const std::string>(std::move(body_));
  std::shared_ptr<const std::string> vary;
  if (vary_kind == VaryKind::Names) vary = std::make_shared<const std::string>(std::move(names));
  auto entry = Entry::make(facts.status, keep, std::move(body), facts, std::move(secondary));
  const size_t reserved = reserved_;
  reserved_ = 0;
  Store* store = store_;
  const CommitResult r = store->publish(primary_, std::move(entry), std::move(vary), reserved);
  if (id_ != 0)
    store->finish_fill(shard_, id_,
                       r == CommitResult::Stored ? WaitResult::Completed : WaitResult::Abandoned);
  id_ = 0;
  store_ = nullptr;
  return r;
}

Store::Acquire Store::acquire_fill(std::string_view primary, std::string_view secondary,
                                   WaitCallback on_done) {
  std::string key;
  key.reserve(primary.size() + 1 + secondary.size());
  key.append(primary).push_back('\0');  // no URI holds a NUL
  key.append(secondary);
  Acquire a;
  const uint32_t si = shard_of(primary);
  Shard& s = shards_[si];
  {
    std::lock_guard lock(s.mu);
    auto it = s.fill_ids.find(key);
    if (it != s.fill_ids.end()) {
      if (waiters_.fetch_add(1, std::memory_order_relaxed) < config_.max_waiters) {
        const uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
        s.fills[it->second].waiters.push_back(Shard::Waiter{id, std::move(on_done)});
        a.kind = Acquire::Kind::Wait;
        a.token = WaitToken{si, it->second, id};
        coalesced_.fetch_add(1, std::memory_order_relaxed);
        return a;
      }
      waiters_.fetch_sub(1, std::memory_order_relaxed);
    } else if (fills_.fetch_add(1, std::memory_order_relaxed) < config_.max_fills) {
      const uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
      s.fill_ids.emplace(key, id);
      s.fills.emplace(id, Shard::Fill{std::move(key), {}});
      a.kind = Acquire::Kind::Fill;
      a.ticket.id_ = id;
    } else {
      fills_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  a.ticket.store_ = this;
  a.ticket.shard_ = si;
  a.ticket.primary_.assign(primary);
  return a;
}

void Store::finish_fill(uint32_t si, uint64_t id, WaitResult result) {
  Shard& s = shards_[si];
  std::vector<Shard::Waiter> waiters;
  {
    std::lock_guard lock(s.mu);
    auto it = s.fills.find(id);
    if (it == s.fills.end()) return;
    waiters = std::move(it->second.waiters);
    s.fill_ids.erase(it->second.key);
    s.fills.erase(it);
  }
  fills_.fetch_sub(1, std::memory_order_relaxed);
  waiters_.fetch_sub(waiters.size(), std::memory_order_relaxed);
  for (Shard::Waiter& w : waiters)
    w.fn(result);
}

bool Store::cancel_wait(const WaitToken& token) {
  if (token.shard >= config_.shards) return false;
  Shard& s = shards_[token.shard];
  WaitCallback fn;  // destroyed after the lock
  {
    std::lock_guard lock(s.mu);
    auto it = s.fills.find(token.fill);
    if (it == s.fills.end()) return false;
    auto& ws = it->second.waiters;
    auto w = std::find_if(ws.begin(), ws.end(),
                          [&](const Shard::Waiter& x) { return x.id == token.waiter; });
    if (w == ws.end()) return false;
    fn = std::move(w->fn);
    ws.erase(w);
  }
  waiters_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

}  // namespace weir::cache
