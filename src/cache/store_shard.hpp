#pragma once
// The inside of a cache::Store shard, shared by store.cpp (index, LRU, memory) and
// store_fill.cpp (fills and their waiters). Private to src/cache.
#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cache/store.hpp"

namespace weir::cache {

namespace store_detail {

// Allocator header and rounding per heap block (glibc malloc: 8 bytes of header, sizes rounded
// up to 16): counted once per block the store's structures allocate.
constexpr size_t kHeap = 16;
// libstdc++'s control block of a shared_ptr built from `new` (vptr, two counts, the pointer)
// and of make_shared (vptr, two counts, then the object).
constexpr size_t kSharedPtrBlock = 24;
constexpr size_t kMakeSharedHeader = 16;

struct Hash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
struct Eq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};

inline size_t vary_charge(const std::shared_ptr<const std::string>& vary) {
  if (!vary) return 0;
  return kMakeSharedHeader + sizeof(std::string) + kHeap + kHeap + vary->capacity();
}

}  // namespace store_detail

struct Store::Shard {
  struct Slot;
  struct LruNode {
    Slot* slot;
    const std::string* key;  // the map's own key (node-based map: stable)
    const Entry* entry;
  };
  using Lru = std::list<LruNode>;
  struct Variant {
    std::shared_ptr<const Entry> entry;
    Lru::iterator lru;
  };
  struct Slot {
    std::shared_ptr<const std::string> vary;  // null: no Vary
    std::vector<Variant> variants;            // oldest first
    size_t charge = 0;                        // slot_overhead + key + vary
  };
  struct Waiter {
    uint64_t id;
    WaitCallback fn;
  };
  struct Fill {
    std::string key;
    std::vector<Waiter> waiters;
  };

  std::mutex mu;
  std::unordered_map<std::string, Slot, store_detail::Hash, store_detail::Eq> map;
  Lru lru;  // front: most recently used
  std::unordered_map<std::string, uint64_t, store_detail::Hash, store_detail::Eq> fill_ids;
  std::unordered_map<uint64_t, Fill> fills;

  // Removes variant i of `slot`, unlinking its LRU node; returns the entry.
  std::shared_ptr<const Entry> remove_variant(Slot& slot, size_t i) {
    std::shared_ptr<const Entry> e = std::move(slot.variants[i].entry);
    lru.erase(slot.variants[i].lru);
    slot.variants.erase(slot.variants.begin() + ptrdiff_t(i));
    // Keep capacity ≤ 4 × size, as entry_overhead() assumes.
    if (slot.variants.capacity() > 4 * slot.variants.size()) slot.variants.shrink_to_fit();
    return e;
  }

  std::shared_ptr<const Entry> take(Slot& slot, std::string_view secondary) {
    for (Variant& v : slot.variants) {
      if (v.entry->secondary_key() == secondary) {
        lru.splice(lru.begin(), lru, v.lru);
        return v.entry;
      }
    }
    return nullptr;
  }
};

}  // namespace weir::cache
