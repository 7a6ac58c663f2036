#pragma once
// The shared response store of one cache: used by every worker thread of the process at once.
//
// Keys: the primary key is the method-independent effective URI, "scheme://authority/path?query"
// (the wiring builds it, lower-case scheme and host); each primary key holds up to
// `max_variants` responses (variants) told apart by their Vary secondary key (vary.hpp). The URI
// remembers the Vary name list of its latest stored response; storing a response whose list
// differs drops the URI's other variants (their keys were made with the old list). Beyond
// max_variants the oldest variant goes.
//
// Entries are immutable and handed out as shared_ptr<const Entry>: a reader keeps its entry alive
// after eviction or purge. A 304 builds a new entry (sharing the body) and swaps it in.
//
// Locking: `shards` shards by hash of the primary key, each with its own mutex, index, LRU list
// and fill table; no lock is global, and no thread ever holds two shard locks. A hit holds its
// shard lock for a hash-map find, a scan of at most max_variants keys, an LRU splice and a
// shared_ptr copy (twice when the URI has a Vary: once to read the name list, once to find the
// variant, the key being built between the two without the lock).
//
// Memory: bytes() never exceeds `memory`. It counts, for each stored response, its field block,
// the capacity of its body and secondary key strings and a fixed entry_overhead() (the Entry,
// its shared_ptr control block, the body's, the LRU list node, four slots of the variants vector
// (kept at most 4x its size) and 16 bytes of allocator header per heap block: sizeof-based, see
// store.cpp); for each URI the key bytes, the Vary list and a fixed slot_overhead() (hash node,
// two bucket pointers, Slot); and the body bytes of fills in progress (reserved as they grow,
// so a thousand concurrent fills cannot exceed the bound either). One global atomic counter: a fill
// or insert reserves its bytes by CAS before it touches a shard; when the bound is reached, entries
// are evicted in LRU order from the key's own shard first, then from the next shards in turn (one
// shard lock at a time). What is not counted: the shard objects (fixed, allocated at construction);
// the hash-map bucket arrays beyond two pointers per URI present (they keep their peak size after
// mass removal, at most 8 bytes × memory / slot_overhead()); fill and waiter bookkeeping (bounded
// by max_fills and max_waiters); entries readers still hold after eviction; the request's key
// string while a lookup builds it.
//
// Coalescing: acquire_fill() makes the first miss of a (primary, secondary) key its filler and
// later ones waiters. A waiter's callback runs once, on the filler's thread, outside any lock,
// when the fill commits (Completed: look up again; the response may be for another variant, or
// not storable after all) or is abandoned (the ticket is destroyed or aborted without storing:
// go to the server yourself). Fills and waiters are bounded (max_fills, max_waiters); beyond,
// acquire_fill says Bypass: go to the server, with a ticket that may still store but nobody waits
// on.
//
// Purge: purge_path / purge_prefix match the path part of the keys (from the first "/" after
// "://", query included), whatever the authority, so a purge reaches every host of the cache.
// purge_path("/a.css") removes "/a.css" with any query or none; a path containing "?" must match
// path and query exactly. purge_prefix matches the start of path + query.
//
// A FillTicket must not outlive its Store.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cache/freshness.hpp"
#include "cache/vary.hpp"

namespace weir::cache {

class Store;

// A stored response. Immutable.
class Entry {
 public:
  // `fields`: the fields to keep (fields_to_store applied by the caller, or by FillTicket).
  static std::shared_ptr<const Entry> make(uint16_t status, std::span<const Field> fields,
                                           std::shared_ptr<const std::string> body,
                                           const ResponseFacts& facts, std::string secondary_key);
  Entry(const Entry&) = delete;
  Entry& operator=(const Entry&) = delete;

  uint16_t status() const { return facts_.status; }
  const ResponseFacts& facts() const { return facts_; }
  // Views into one block owned by the entry, in the order received.
  std::span<const Field> fields() const { return {fields_, field_count_}; }
  // The first field of that name (case-insensitive), or "" with found = false.
  std::string_view field(std::string_view name, bool* found = nullptr) const;
  std::string_view body() const { return *body_; }
  const std::shared_ptr<const std::string>& shared_body() const { return body_; }
  std::string_view secondary_key() const { return secondary_; }
  // Bytes this entry counts against the store's memory.
  size_t charge() const { return charge_; }

 private:
  Entry() = default;

  ResponseFacts facts_;
  std::unique_ptr<std::byte[]> block_;  // Field[field_count_], then the name and value bytes
  const Field* fields_ = nullptr;
  size_t field_count_ = 0;
  std::shared_ptr<const std::string> body_;
  std::string secondary_;
  size_t charge_ = 0;
};

struct StoreConfig {
  size_t memory = 64u << 20;     // bytes() never exceeds it
  size_t max_object = 8u << 20;  // largest body stored
  size_t shards = 16;            // 1 to 256
  size_t max_variants = 32;      // per URI, at least 1
  size_t max_fills = 4096;       // coalesced fills in progress
  size_t max_waiters = 16384;    // requests waiting on them
};

enum class WaitResult : uint8_t {
  Completed,  // the fill stored a response: look up again (may miss: another variant)
  Abandoned,  // nothing was stored: go to the server yourself
};
using WaitCallback = std::function<void(WaitResult)>;

struct WaitToken {
  uint32_t shard = 0;
  uint64_t fill = 0;
  uint64_t waiter = 0;
};

enum class CommitResult : uint8_t {
  Stored,
  Aborted,      // the body outgrew max_object or the memory, or abandon() was called
  NotStorable,  // Vary "*", too many names or an invalid one
  KeyTooLong,   // the secondary key exceeds kMaxSecondaryKey
  NoMemory,     // the entry does not fit even after evicting everything else
};

// The right and duty to fill one key: feed it the body as it streams, then commit().
// Destroyed without commit: abandoned (waiters are told to go to the server). Move-only.
class FillTicket {
 public:
  FillTicket() = default;
  FillTicket(FillTicket&& o) noexcept;
  FillTicket& operator=(FillTicket&& o) noexcept;
  ~FillTicket();

  bool valid() const { return store_ != nullptr; }
  bool aborted() const { return aborted_; }
  size_t size() const { return body_.size(); }

  // Reserves room for a body of `n` bytes (a Content-Length), so append() does not grow it.
  // False (and aborted) when n > max_object or the memory cannot be had.
  bool expect(size_t n);
  // Adds body bytes. False once aborted: beyond max_object, or no memory; the bytes gathered
  // so far are freed and later calls do nothing (keep streaming to the client regardless).
  bool append(std::string_view bytes);
  // Publishes the response, replacing the variant with the same secondary key, and wakes the
  // waiters. `response_fields` as received (fields_to_store is applied here); `request_fields`
  // are the request's, for the Vary key. The ticket is spent afterwards.
  CommitResult commit(const ResponseFacts& facts, std::span<const Field> response_fields,
                      std::span<const Field> request_fields);
  // Gives up: frees the body, wakes the waiters with Abandoned. Done by the destructor too.
  void abandon();

 private:
  friend class Store;
  bool grow(size_t need);
  void release();

  Store* store_ = nullptr;
  uint32_t shard_ = 0;
  uint64_t id_ = 0;  // 0: not registered (Bypass)
  std::string primary_;
  std::string body_;
  size_t reserved_ = 0;  // bytes of body_ capacity counted in the store
  bool aborted_ = false;
};

class Store {
 public:
  // The fixed bytes counted per stored response and per URI (see the header comment).
  static size_t entry_overhead();
  static size_t slot_overhead();

  explicit Store(const StoreConfig& config);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  struct Lookup {
    std::shared_ptr<const Entry> entry;  // null: miss
    std::string secondary;  // the request's secondary key under the URI's Vary ("" if none)
    bool bypass = false;    // the key would be too long: do not cache this request
  };
  // The variant for this request, if stored. Counts a hit or a miss.
  Lookup lookup(std::string_view primary, std::span<const Field> request_fields);
  // The same with the secondary key given (no Vary handling, counts nothing).
  std::shared_ptr<const Entry> find(std::string_view primary, std::string_view secondary);

  struct Acquire {
    enum class Kind : uint8_t {
      Fill,    // go to the server and fill `ticket`; later misses wait for it
      Wait,    // someone fills it; `on_done` was registered, `token` cancels it
      Bypass,  // the fill table is full: go to the server; `ticket` may still store
    };
    Kind kind = Kind::Bypass;
    FillTicket ticket;
    WaitToken token;
  };
  // `secondary` from Lookup. `on_done` is kept only for Wait.
  Acquire acquire_fill(std::string_view primary, std::string_view secondary, WaitCallback on_done);
  // True: removed, `on_done` will never run. False: it has run or is running now on the
  // filler's thread (so the callback must stay safe to call until then).
  bool cancel_wait(const WaitToken& token);

  // After a 304 (or HEAD) for `old`, found under `primary`: the entry with the merged fields
  // (merge_304_fields) and the new times, sharing old's body. Swapped in only if `old` is still
  // the stored variant and the memory allows (`stored`); `entry` is the merged one either way,
  // to answer with.
  struct Update {
    std::shared_ptr<const Entry> entry;
    bool stored = false;
  };
  Update update(std::string_view primary, const std::shared_ptr<const Entry>& old,
                std::span<const Field> update_fields, int64_t request_time, int64_t response_time);

  // Removes every variant of the URI (RFC 9111 4.4); returns how many.
  size_t invalidate(std::string_view primary);
  size_t purge_path(std::string_view path);
  size_t purge_prefix(std::string_view prefix);

  // Stats (relaxed atomics).
  size_t bytes() const { return used_.load(std::memory_order_relaxed); }
  size_t memory() const { return config_.memory; }
  size_t max_object() const { return config_.max_object; }
  uint64_t entries() const { return entries_.load(std::memory_order_relaxed); }
  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }
  uint64_t evictions() const { return evictions_.load(std::memory_order_relaxed); }
  uint64_t coalesced() const { return coalesced_.load(std::memory_order_relaxed); }
  size_t fills_in_progress() const { return fills_.load(std::memory_order_relaxed); }
  size_t waiters() const { return waiters_.load(std::memory_order_relaxed); }

 private:
  friend class FillTicket;
  struct Shard;

  uint32_t shard_of(std::string_view primary) const;
  bool reserve(size_t n, uint32_t home);
  void release(size_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }
  bool evict_one(uint32_t shard);
  // Puts `e` in, with `reserved` bytes already counted (all released on failure).
  CommitResult publish(std::string_view primary, std::shared_ptr<const Entry> e,
                       std::shared_ptr<const std::string> vary, size_t reserved);
  void finish_fill(uint32_t shard, uint64_t id, WaitResult result);
  size_t remove_if(const std::function<bool(std::string_view key)>& match);

  const StoreConfig config_;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<size_t> used_{0};
  std::atomic<uint64_t> entries_{0};
  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
  std::atomic<uint64_t> evictions_{0};
  std::atomic<uint64_t> coalesced_{0};
  std::atomic<size_t> fills_{0};
  std::atomic<size_t> waiters_{0};
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace weir::cache
