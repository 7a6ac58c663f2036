#include "cache/store.hpp"

#include <algorithm>
#include <cstring>
#include <list>
#include <new>
#include <unordered_map>

#include "cache/store_shard.hpp"

namespace weir::cache {

using namespace store_detail;  // NOLINT(google-build-using-namespace)

size_t Store::entry_overhead() {
  return sizeof(Entry) + kHeap                                 // the Entry
         + kSharedPtrBlock + kHeap                             // its control block
         + kMakeSharedHeader + sizeof(std::string) + kHeap     // the body's make_shared block
         + 3 * kHeap                                           // field block, body, key buffers
         + sizeof(Shard::LruNode) + 2 * sizeof(void*) + kHeap  // the LRU list node
         + 4 * sizeof(Shard::Variant);                         // its share of the vector
}

size_t Store::slot_overhead() {
  // Hash node: next pointer, key, Slot, cached hash; two bucket pointers (load factor ≤ 1 and
  // growth); the key's heap block and the variants vector's.
  return sizeof(void*) + sizeof(std::string) + sizeof(Shard::Slot) + sizeof(size_t) + kHeap +
         2 * sizeof(void*) + kHeap + kHeap;
}

// --- Entry ---

std::shared_ptr<const Entry> Entry::make(uint16_t status, std::span<const Field> fields,
                                         std::shared_ptr<const std::string> body,
                                         const ResponseFacts& facts, std::string secondary_key) {
  std::shared_ptr<Entry> e(new Entry());
  e->facts_ = facts;
  e->facts_.status = status;
  size_t bytes = fields.size() * sizeof(Field);
  for (const Field& f : fields)
    bytes += f.name.size() + f.value.size();
  if (!fields.empty()) {
    e->block_ = std::make_unique<std::byte[]>(bytes);
    Field* index = reinterpret_cast<Field*>(e->block_.get());
    char* p = reinterpret_cast<char*>(e->block_.get() + fields.size() * sizeof(Field));
    for (size_t i = 0; i < fields.size(); ++i) {
      const Field& f = fields[i];
      std::memcpy(p, f.name.data(), f.name.size());
      const std::string_view name(p, f.name.size());
      p += f.name.size();
      std::memcpy(p, f.value.data(), f.value.size());
      const std::string_view value(p, f.value.size());
      p += f.value.size();
      new (&index[i]) Field{name, value};
    }
    e->fields_ = index;
    e->field_count_ = fields.size();
  }
  e->body_ = body ? std::move(body) : std::make_shared<const std::string>();
  e->secondary_ = std::move(secondary_key);
  e->charge_ = Store::entry_overhead() + bytes + e->body_->capacity() + e->secondary_.capacity();
  return e;
}

std::string_view Entry::field(std::string_view name, bool* found) const {
  for (const Field& f : fields()) {
    if (http::iequals(f.name, name)) {
      if (found) *found = true;
      return f.value;
    }
  }
  if (found) *found = false;
  return {};
}

// --- Store ---

Store::Store(const StoreConfig& config)
    : config_{config.memory,
              config.max_object,
              std::clamp<size_t>(config.shards, 1, 256),
              std::max<size_t>(config.max_variants, 1),
              config.max_fills,
              config.max_waiters},
      shards_(new Shard[config_.shards]) {}

Store::~Store() = default;

uint32_t Store::shard_of(std::string_view primary) const {
  uint64_t h = Hash{}(primary);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return uint32_t(h % config_.shards);
}

bool Store::reserve(size_t n, uint32_t home) {
  if (n == 0) return true;
  if (n > config_.memory) return false;
  uint32_t shard = home;
  size_t empty_in_a_row = 0;
  size_t cur = used_.load(std::memory_order_relaxed);
  while (true) {
    // cur ≤ memory and n ≤ memory: no overflow.
    while (cur + n <= config_.memory) {
      if (used_.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed)) return true;
    }
    if (evict_one(shard)) {
      empty_in_a_row = 0;
    } else {
      // Everything left is held by fills in progress (or others evict as fast as we do).
      if (++empty_in_a_row == config_.shards) return false;
      shard = uint32_t((shard + 1) % config_.shards);
    }
    cur = used_.load(std::memory_order_relaxed);
  }
}

bool Store::evict_one(uint32_t si) {
  Shard& s = shards_[si];
  std::shared_ptr<const Entry> victim;  // freed after the lock
  size_t freed = 0;
  {
    std::lock_guard lock(s.mu);
    if (s.lru.empty()) return false;
    const Shard::LruNode node = s.lru.back();
    Shard::Slot& slot = *node.slot;
    for (size_t i = 0; i < slot.variants.size(); ++i) {
      if (slot.variants[i].entry.get() == node.entry) {
        victim = s.remove_variant(slot, i);
        break;
      }
    }
    freed = victim->charge();
    if (slot.variants.empty()) {
      freed += slot.charge;
      s.map.erase(s.map.find(*node.key));
    }
    // Counted under the lock, so a removal is never counted before its insertion.
    entries_.fetch_sub(1, std::memory_order_relaxed);
  }
  release(freed);
  evictions_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

CommitResult Store::publish(std::string_view primary, std::shared_ptr<const Entry> e,
                            std::shared_ptr<const std::string> vary, size_t reserved) {
  const uint32_t si = shard_of(primary);
  const size_t slot_charge = slot_overhead() + primary.size() + vary_charge(vary);
  const size_t entry_charge = e->charge();
  // Reserve as if the URI were new; what is not used goes back below.
  const size_t need = entry_charge + slot_charge;
  if (need > reserved) {
    if (!reserve(need - reserved, si)) {
      release(reserved);
      return CommitResult::NoMemory;
    }
    reserved = need;
  }
  std::vector<std::shared_ptr<const Entry>> dropped;  // freed after the lock
  size_t used = entry_charge;
  size_t freed = 0;
  Shard& s = shards_[si];
  {
    std::lock_guard lock(s.mu);
    auto [it, inserted] = s.map.try_emplace(std::string(primary));
    Shard::Slot& slot = it->second;
    const bool same_vary =
        !inserted && (slot.vary == vary || (slot.vary && vary && *slot.vary == *vary));
    if (!same_vary) {
      // A new Vary list: the other variants' keys mean nothing under it.
      while (!slot.variants.empty())
        dropped.push_back(s.remove_variant(slot, slot.variants.size() - 1));
      std::vector<Shard::Variant>().swap(slot.variants);
      freed += slot.charge;
      slot.vary = vary;
      slot.charge = slot_charge;
      used += slot_charge;
    }
    for (size_t i = 0; i < slot.variants.size(); ++i) {
      if (slot.variants[i].entry->secondary_key() == e->secondary_key()) {
        dropped.push_back(s.remove_variant(slot, i));
        break;
      }
    }
    if (slot.variants.size() >= config_.max_variants) dropped.push_back(s.remove_variant(slot, 0));
    s.lru.push_front(Shard::LruNode{&slot, &it->first, e.get()});
    slot.variants.push_back(Shard::Variant{std::move(e), s.lru.begin()});
    entries_.fetch_add(1, std::memory_order_relaxed);
    entries_.fetch_sub(dropped.size(), std::memory_order_relaxed);
  }
  for (const auto& d : dropped)
    freed += d->charge();
  release(freed + (reserved - used));
  return CommitResult::Stored;
}

Store::Lookup Store::lookup(std::string_view primary, std::span<const Field> request_fields) {
  Lookup r;
  Shard& s = shards_[shard_of(primary)];
  std::shared_ptr<const std::string> vary;
  {
    std::lock_guard lock(s.mu);
    auto it = s.map.find(primary);
    if (it != s.map.end()) {
      if (it->second.vary)
        vary = it->second.vary;
      else
        r.entry = s.take(it->second, {});
    }
  }
  if (vary) {
    if (!secondary_key(*vary, request_fields, r.secondary)) {
      r.secondary.clear();
      r.bypass = true;
    } else {
      r.entry = find(primary, r.secondary);
    }
  }
  (r.entry ? hits_ : misses_).fetch_add(1, std::memory_order_relaxed);
  return r;
}

std::shared_ptr<const Entry> Store::find(std::string_view primary, std::string_view secondary) {
  Shard& s = shards_[shard_of(primary)];
  std::lock_guard lock(s.mu);
  auto it = s.map.find(primary);
  return it == s.map.end() ? nullptr : s.take(it->second, secondary);
}

Store::Update Store::update(std::string_view primary, const std::shared_ptr<const Entry>& old,
                            std::span<const Field> update_fields, int64_t request_time,
                            int64_t response_time) {
  std::vector<Field> merged;
  merge_304_fields(old->fields(), update_fields, merged);
  const ResponseFacts facts = response_facts(old->status(), merged, request_time, response_time);
  Update u;
  u.entry = Entry::make(old->status(), merged, old->shared_body(), facts,
                        std::string(old->secondary_key()));
  const uint32_t si = shard_of(primary);
  if (!reserve(u.entry->charge(), si)) return u;
  Shard& s = shards_[si];
  {
    std::lock_guard lock(s.mu);
    auto it = s.map.find(primary);
    if (it != s.map.end()) {
      for (Shard::Variant& v : it->second.variants) {
        if (v.entry == old) {
          v.entry = u.entry;  // `old` is still held by the caller: nothing freed here
          v.lru->entry = u.entry.get();
          s.lru.splice(s.lru.begin(), s.lru, v.lru);
          u.stored = true;
          break;
        }
      }
    }
  }
  release(u.stored ? old->charge() : u.entry->charge());
  return u;
}

size_t Store::remove_if(const std::function<bool(std::string_view key)>& match) {
  size_t removed = 0;
  for (size_t si = 0; si < config_.shards; ++si) {
    Shard& s = shards_[si];
    std::vector<std::shared_ptr<const Entry>> dropped;
    size_t freed = 0;
    {
      std::lock_guard lock(s.mu);
      for (auto it = s.map.begin(); it != s.map.end();) {
        if (!match(it->first)) {
          ++it;
          continue;
        }
        Shard::Slot& slot = it->second;
        while (!slot.variants.empty())
          dropped.push_back(s.remove_variant(slot, slot.variants.size() - 1));
        freed += slot.charge;
        it = s.map.erase(it);
      }
      entries_.fetch_sub(dropped.size(), std::memory_order_relaxed);
    }
    for (const auto& d : dropped)
      freed += d->charge();
    release(freed);
    removed += dropped.size();
  }
  return removed;
}

size_t Store::invalidate(std::string_view primary) {
  Shard& s = shards_[shard_of(primary)];
  std::vector<std::shared_ptr<const Entry>> dropped;
  size_t freed = 0;
  {
    std::lock_guard lock(s.mu);
    auto it = s.map.find(primary);
    if (it == s.map.end()) return 0;
    while (!it->second.variants.empty())
      dropped.push_back(s.remove_variant(it->second, it->second.variants.size() - 1));
    freed = it->second.charge;
    s.map.erase(it);
    entries_.fetch_sub(dropped.size(), std::memory_order_relaxed);
  }
  for (const auto& d : dropped)
    freed += d->charge();
  release(freed);
  return dropped.size();
}

namespace {

// The path and query of a key "scheme://authority/path?query" ("" if it has none).
std::string_view path_of(std::string_view key) {
  const size_t scheme = key.find("://");
  const size_t from = scheme == std::string_view::npos ? 0 : scheme + 3;
  const size_t slash = key.find('/', from);
  return slash == std::string_view::npos ? std::string_view() : key.substr(slash);
}

}  // namespace

size_t Store::purge_path(std::string_view path) {
  const bool with_query = path.find('?') != std::string_view::npos;
  return remove_if([&](std::string_view key) {
    const std::string_view p = path_of(key);
    return with_query ? p == path : p.substr(0, p.find('?')) == path;
  });
}

size_t Store::purge_prefix(std::string_view prefix) {
  return remove_if([&](std::string_view key) { return path_of(key).starts_with(prefix); });
}

}  // namespace weir::cache
