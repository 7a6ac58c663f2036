#pragma once
// Per-client limits of a listener (`client_limits`: max_connections per client address and a
// request rate per key), shared by every worker thread: one table per listener, kept across
// reloads (the limits are passed per call, so a reload that changes them keeps the counts).
//
// Layout: a fixed open-addressed array of `capacity` slots, allocated once at construction and
// never resized; memory_bytes() = capacity × 32 bytes. A slot (32 bytes, two a cache line):
//   key       8 B  the client key's 64-bit hash; 0 = never used, 1 = being reclaimed
//   tat       8 B  the token bucket, as GCRA's "theoretical arrival time": the steady-clock ns
//                  at which the bucket is full again (≤ now: full)
//   last_used 8 B  steady-clock ns of the key's last open_connection() or take()
//   conns     4 B  the key's open connections
//   lock      4 B  held only while a key whose home is this slot is being inserted
// A key lives in one of the kWindow (16) slots from its home slot (mix64(key) reduced onto the
// capacity), so a lookup reads at most 16 slots (512 bytes, in a row) whatever the load; it
// stops at the first never-used slot. A new key takes the first slot of its window that is
// never-used or reclaimable (so no never-used slot ever precedes a key in its window).
//
// The per-request path takes no lock: a known key is found by plain loads, a connection is
// counted by CAS on `conns`, a token taken by CAS on `tat`. Only the first request of a key not
// in the table takes a spin lock, its home slot's, so that two workers inserting the same key
// at once cannot put it in two slots (which would split its counts); it is held for one scan of
// the window.
//
// Token bucket as GCRA: with T = 1/rate and burst B, a request is allowed when
// tat - now ≤ (B - 1)·T, and then tat = max(tat, now) + T. That is exactly a bucket of B
// tokens refilled at `rate` (tokens = B - (tat - now)/T), in one 64-bit word with ns precision
// and no wrap-around. A reload that changes rate or burst keeps "when is the bucket full", so
// the debt is re-read in the new rate's tokens. Retry-After is ceil(seconds until a token is
// back), at least 1.
//
// Keys: a 64-bit hash (balance::hash_key over the address bytes or the header value). Two
// clients whose hashes collide share their limits; with N live keys the chance that any pair
// collides is about N²/2^65 (3·10^-8 for a million keys). Keys 0 and 1 are reserved and remapped
// to other values (so they may collide with those, equally unlikely).
//
// Expiry: a slot may be taken over by a new key (reclaimed) when its key has no open
// connection, its bucket is full again and it was not used for idle_expiry. Such a slot holds
// nothing a fresh slot would not (0 connections, a full bucket), so a reclaim loses no limit
// state; idle_expiry only keeps recent keys resident.
//
// At the bound (no never-used and no reclaimable slot in the new key's window): fail open. The
// request or connection is allowed, not tracked, and counted in untracked(). Why: the keys that
// fill a table are what an attacker controls most cheaply (any header value; many addresses
// from a botnet or an IPv6 /64), so a full table must not refuse real clients, and evicting a
// live slot (LRU) would hand whoever floods the table a way to reset other clients' buckets.
// Keys already in the table keep their limits exactly while it is full. Size the capacity for
// the expected clients within idle_expiry; untracked() > 0 says it is too small.
//
// Shared tables (`client_limits.shared`, src/cluster/): one more array, `taken`, 4 bytes a slot,
// counts the tokens this instance granted to the slot's key since the cluster thread last
// drained it (a relaxed fetch_add after a granted take(); the drain is an exchange, so no
// token is lost or counted twice). Every cluster.sync_interval the cluster thread drains the
// counts (drain_taken), pushes them to the fleet's bucket of each key in Redis and charges
// what the fleet owes back to the local bucket (charge: tat only moves forward). The request
// path never waits for any of it.
//
// max_connections is shared too, without waiting at accept: a second array, `others`, 4 bytes
// a slot, holds the open connections the *other* instances of the fleet reported for the
// slot's key at the last sync, and open_connection admits while conns + others <
// max_connections (one more relaxed load; `conns` is still raised by CAS, so this instance
// never exceeds its own share). The cluster thread (collect_conns, set_others, adopt) keeps a
// list of the slots it syncs, `sync_` (its own, no lock): a slot joins when a scan finds it
// with open connections (at most kScanPerRound slots scanned a round, on from where the last
// scan stopped) or is adopted as one of the fleet's full keys (src/cluster/limit_sync.hpp),
// and stays while it has connections here, the count it last published is not 0 (so the drop
// to 0 is published once) or the fleet reported others; then it leaves and costs nothing
// more. Each round publishes, for the listed slots (a bounded number, rotated), this
// instance's count and reads back the others' sum into `others`. A slot reclaimed by a new key
// must not inherit the old key's `others`: the reclaimer zeroes it before the new key is
// stored, and set_others re-checks the key after its store (zeroing it if the key changed), so
// a value is only ever kept while the slot holds the key it was read for (and only listed
// slots hold one: a slot leaving the list is zeroed). Redis unreachable: clear_others() zeroes
// them all at once and every interval after, and each instance limits on its own counts.
//
// Races, and why counts stay exact:
// - Two takes of the last token: both CAS the same `tat`; one wins, the other re-reads it.
// - open vs open: `conns` is raised by CAS only while below the limit, so no more than
//   max_connections are ever admitted at once, even by many workers.
// - Reclaim vs a use of the old key: the reclaimer first swaps the key to "being reclaimed",
//   then re-checks conns and tat; a user raises conns (or moves tat) first, then re-reads the
//   key. All four are sequentially consistent, so one of the two sees the other: either the
//   reclaim is abandoned (key restored) or the user undoes its count and starts again. A slot
//   with open connections is therefore never reclaimed. The imprecisions, both only while an
//   idle key is being replaced and both towards refusing: a take() whose CAS lands after the
//   reclaimer's check leaves its token charged to the new key, which then starts up to one
//   token short per such racing request (the request is charged to its own key too); and a
//   connection counted then undone by such a user is, for those few ns, seen by the new key.
// - A lookup that meets "being reclaimed" where its key was goes to the insert path, which
//   waits for the reclaim to finish before deciding the key is absent.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

namespace weir::model {

class ClientTable {
 public:
  static constexpr size_t kWindow = 16;  // slots a key may occupy, from its home slot

  // capacity: keys tracked at most, 1 to 2^32 - 1 (clamped); all memory is allocated here.
  // shared: also count the tokens taken for the cluster sync (see "Shared tables").
  explicit ClientTable(size_t capacity,
                       std::chrono::nanoseconds idle_expiry = std::chrono::seconds(60),
                       bool shared = false);
  ClientTable(const ClientTable&) = delete;
  ClientTable& operator=(const ClientTable&) = delete;

  // One client connection. admitted = false: the key already has max_connections open (nothing
  // counted; refuse it; a shared table counts the other instances' too, as of the last sync).
  // tracked = false: the table is full (admitted, nothing counted, see "at the bound"). Give an
  // admitted and tracked Conn back to close_connection() when the connection ends, to the same
  // table.
  struct Conn {
    uint32_t slot = 0;
    bool admitted = true;
    bool tracked = false;
  };
  Conn open_connection(uint64_t key, uint32_t max_connections, int64_t now_ns);
  void close_connection(const Conn& c);

  // One request against the key's token bucket (rate_per_s > 0, burst ≥ 1; other values are
  // clamped). allowed = false: no token; answer 429 with Retry-After: retry_after_s (≥ 1).
  // tracked = false: the table is full (allowed, see "at the bound").
  struct Take {
    bool allowed = true;
    uint32_t retry_after_s = 0;
    bool tracked = false;
  };
  Take take(uint64_t key, double rate_per_s, double burst, int64_t now_ns);

  // Shared tables only, from one thread (the cluster's): appends to `out` the slots holding
  // tokens taken since their last drain, with their keys and counts, zeroing the counts. Scans
  // on from where the previous call stopped and stops after `max` slots found (the others keep
  // their counts for the next call). Returns how many were appended.
  struct Taken {
    uint32_t slot = 0;
    uint64_t key = 0;
    uint32_t tokens = 0;
  };
  size_t drain_taken(std::vector<Taken>& out, size_t max);
  // The fleet's debt for `key` (ns of tokens owed beyond now, at the time `now_ns`): its bucket
  // is at least that empty, plus the tokens taken here since the drain that fed the merge. Only
  // moves tat forward; nothing if the slot holds another key by now.
  void charge(uint32_t slot, uint64_t key, int64_t debt_ns, double rate_per_s, int64_t now_ns);
  bool shared() const { return taken_ != nullptr; }

  // Shared tables only, from the cluster thread: the slots whose connection counts go out this
  // round (see "Shared tables"), at most `max`, rotated so that none is starved; `conns` is
  // this instance's open connections (0: the drop to 0, published once). Returns how many slots
  // are listed in all (≥ the appended ones): a slot waits at most ceil(that / max) rounds.
  static constexpr size_t kScanPerRound = 65536;
  struct ConnCount {
    uint32_t slot = 0;
    uint64_t key = 0;
    uint32_t conns = 0;
  };
  size_t collect_conns(std::vector<ConnCount>& out, size_t max);
  // The other instances' open connections for `key`; nothing if the slot holds another key.
  void set_others(uint32_t slot, uint64_t key, uint32_t others);
  // A key at its limit through the other instances (the fleet's "full" keys) that this one may
  // not list yet: inserted if absent (nothing if the table is full), listed, and its `others`
  // set to `others` until the next round reads the true count. Nothing if already listed.
  void adopt(uint64_t key, uint32_t others, int64_t now_ns);
  // Redis unreachable: every slot's `others` back to 0 (local counts only).
  void clear_others();
  uint32_t others(uint32_t slot) const {
    return others_ && slot < capacity_ ? others_[slot].load(std::memory_order_relaxed) : 0;
  }
  size_t synced_slots() const { return sync_.size(); }

  size_t capacity() const { return capacity_; }
  // The fixed arrays (the cluster thread's list of synced slots comes on top: about 64 bytes a
  // slot with connections).
  size_t memory_bytes() const {
    return capacity_ * (sizeof(Slot) + (taken_ ? 2 * sizeof(std::atomic<uint32_t>) : 0));
  }
  // Slots that hold a key, idle ones not yet reclaimed included.
  size_t live_entries() const { return occupied_.load(std::memory_order_relaxed); }
  // Connections and requests that found no slot (admitted, not limited).
  uint64_t untracked() const { return untracked_.load(std::memory_order_relaxed); }

 private:
  // 32 bytes, two a cache line; see the header comment.
  struct alignas(32) Slot {
    std::atomic<uint64_t> key{0};
    std::atomic<int64_t> tat{0};
    std::atomic<int64_t> last_used{0};
    std::atomic<uint32_t> conns{0};
    std::atomic<uint32_t> lock{0};
  };
  static constexpr uint32_t kNone = ~uint32_t{0};

  uint32_t find(uint64_t key) const;
  uint32_t find_or_insert(uint64_t key, int64_t now_ns);
  bool reclaimable(const Slot& s, int64_t now_ns) const;
  uint32_t next(uint32_t i) const { return i + 1 == capacity_ ? 0 : i + 1; }

  const uint32_t capacity_;
  const uint32_t window_;
  const int64_t idle_expiry_ns_;
  std::unique_ptr<Slot[]> slots_;
  std::unique_ptr<std::atomic<uint32_t>[]> taken_;   // shared tables only
  std::unique_ptr<std::atomic<uint32_t>[]> others_;  // shared tables only
  // The cluster thread's own.
  struct SyncState {
    uint64_t key = 0;        // the key the slot held when it joined
    uint32_t published = 0;  // the count last sent for it
  };
  uint32_t drain_cursor_ = 0;
  uint32_t scan_cursor_ = 0;
  uint32_t sync_cursor_ = 0;
  std::map<uint32_t, SyncState> sync_;
  alignas(64) std::atomic<size_t> occupied_{0};
  alignas(64) std::atomic<uint64_t> untracked_{0};
};

}  // namespace weir::model
