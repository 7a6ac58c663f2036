#include "model/client_table.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <thread>

#include "balance/hash.hpp"

namespace weir::model {
namespace {

constexpr uint64_t kEmpty = 0;       // a slot never used
constexpr uint64_t kReclaiming = 1;  // a slot being taken over by a new key

constexpr auto kSeq = std::memory_order_seq_cst;
constexpr auto kRelaxed = std::memory_order_relaxed;

// Keys 0 and 1 mark slot states; a caller's 0 or 1 becomes 2 or 3 (a 2^-63 collision, at most).
uint64_t usable(uint64_t key) {
  return key <= kReclaiming ? key + 2 : key;
}

// Spin lock for the insert path only (held for one scan of a window).
class SpinGuard {
 public:
  explicit SpinGuard(std::atomic<uint32_t>& lock) : lock_(lock) {
    for (unsigned spins = 0; lock_.exchange(1, std::memory_order_acquire) != 0;)
      while (lock_.load(kRelaxed) != 0)
        if (++spins % 64 == 0) std::this_thread::yield();
  }
  ~SpinGuard() { lock_.store(0, std::memory_order_release); }
  SpinGuard(const SpinGuard&) = delete;
  SpinGuard& operator=(const SpinGuard&) = delete;

 private:
  std::atomic<uint32_t>& lock_;
};

// GCRA's emission interval T (ns a token) and tolerance (burst - 1)·T, clamped so that
// now + tolerance + T cannot overflow for any steady-clock time below 2^62 ns (146 years).
struct Bucket {
  int64_t interval_ns;
  int64_t tolerance_ns;
};

Bucket bucket_of(double rate_per_s, double burst) {
  constexpr double kMinRate = 1e-6;  // a token every 11.6 days
  constexpr double kMaxTolerance = 0x1p61;
  if (!(rate_per_s >= kMinRate)) rate_per_s = kMinRate;  // NaN too
  if (!(burst >= 1)) burst = 1;
  double interval = std::round(1e9 / rate_per_s);
  double tolerance = std::min(std::round((burst - 1) * interval), kMaxTolerance);
  return {static_cast<int64_t>(interval), static_cast<int64_t>(tolerance)};
}

}  // namespace

ClientTable::ClientTable(size_t capacity, std::chrono::nanoseconds idle_expiry, bool shared)
    : capacity_(static_cast<uint32_t>(std::clamp<size_t>(capacity, 1, kNone - 1))),
      window_(static_cast<uint32_t>(std::min<size_t>(kWindow, capacity_))),
      idle_expiry_ns_(std::max<int64_t>(idle_expiry.count(), 0)),
      slots_(std::make_unique<Slot[]>(capacity_)),
      taken_(shared ? std::make_unique<std::atomic<uint32_t>[]>(capacity_) : nullptr),
      others_(shared ? std::make_unique<std::atomic<uint32_t>[]>(capacity_) : nullptr) {
  static_assert(sizeof(Slot) == 32);
}

uint32_t ClientTable::find(uint64_t key) const {
  uint32_t i = static_cast<uint32_t>(balance::reduce(balance::mix64(key), capacity_));
  for (uint32_t d = 0; d < window_; ++d, i = next(i)) {
    uint64_t k = slots_[i].key.load(std::memory_order_acquire);
    if (k == key) return i;
    if (k == kEmpty) return kNone;  // slots are never emptied: the key is not further on
  }
  return kNone;
}

bool ClientTable::reclaimable(const Slot& s, int64_t now_ns) const {
  return s.conns.load(kSeq) == 0 && s.tat.load(kSeq) <= now_ns &&
         now_ns - s.last_used.load(kSeq) >= idle_expiry_ns_;
}

uint32_t ClientTable::find_or_insert(uint64_t key, int64_t now_ns) {
  if (uint32_t i = find(key); i != kNone) return i;

  const uint32_t home = static_cast<uint32_t>(balance::reduce(balance::mix64(key), capacity_));
  SpinGuard guard(slots_[home].lock);  // one inserter of this key at a time
  for (;;) {
    // Under the lock, look again (another worker may have inserted the key) and pick the first
    // never-used or reclaimable slot. A slot being reclaimed may hold this very key (to be put
    // back): wait for it to settle before deciding the key is absent.
    uint32_t pick = kNone;
    uint64_t pick_key = kEmpty;
    bool settling = false;
    uint32_t i = home;
    for (uint32_t d = 0; d < window_; ++d, i = next(i)) {
      uint64_t k = slots_[i].key.load(std::memory_order_acquire);
      if (k == key) return i;
      if (k == kReclaiming) {
        settling = true;
      } else if (k == kEmpty) {
        if (pick == kNone) pick = i, pick_key = kEmpty;
        break;
      } else if (pick == kNone && reclaimable(slots_[i], now_ns)) {
        pick = i, pick_key = k;
      }
    }
    if (settling) {
      std::this_thread::yield();
      continue;
    }
    if (pick == kNone) return kNone;  // the bound: see the header comment

    Slot& s = slots_[pick];
    if (pick_key == kEmpty) {
      // last_used first, so that no reclaimer sees the new key as long idle.
      s.last_used.store(now_ns, kRelaxed);
      uint64_t expected = kEmpty;
      if (s.key.compare_exchange_strong(expected, key, kSeq)) {
        occupied_.fetch_add(1, kRelaxed);
        return pick;
      }
      continue;  // taken by a key of another home meanwhile
    }
    // Reclaim: hide the old key, then check again that it holds nothing (a user of the old key
    // counts first and checks the key after: one of us sees the other).
    if (!s.key.compare_exchange_strong(pick_key, kReclaiming, kSeq)) continue;
    if (reclaimable(s, now_ns)) {
      s.last_used.store(now_ns, kRelaxed);
      if (others_) others_[pick].store(0, kSeq);  // the old key's fleet count is not the new one's
      s.key.store(key, kSeq);  // tat ≤ now and conns = 0: the state of a fresh slot
      return pick;
    }
    s.key.store(pick_key, kSeq);  // in use again: put it back
  }
}

ClientTable::Conn ClientTable::open_connection(uint64_t key, uint32_t max_connections,
                                               int64_t now_ns) {
  key = usable(key);
  for (;;) {
    uint32_t i = find_or_insert(key, now_ns);
    if (i == kNone) {
      untracked_.fetch_add(1, kRelaxed);
      return {0, true, false};
    }
    Slot& s = slots_[i];
    bool admitted = true;
    // The other instances' connections (shared tables), as of the last sync.
    const uint64_t others = others_ ? others_[i].load(kRelaxed) : 0;
    uint32_t c = s.conns.load(kSeq);
    do {
      if (c + others >= max_connections) {
        admitted = false;
        break;
      }
    } while (!s.conns.compare_exchange_weak(c, c + 1, kSeq));
    if (s.key.load(kSeq) != key) {  // the slot was reclaimed under us: undo, find the key again
      if (admitted) s.conns.fetch_sub(1, kSeq);
      continue;
    }
    s.last_used.store(now_ns, kRelaxed);
    return {i, admitted, true};
  }
}

void ClientTable::close_connection(const Conn& c) {
  if (!c.admitted || !c.tracked || c.slot >= capacity_) return;
  [[maybe_unused]] uint32_t before = slots_[c.slot].conns.fetch_sub(1, kSeq);
  assert(before > 0);
}

ClientTable::Take ClientTable::take(uint64_t key, double rate_per_s, double burst, int64_t now_ns) {
  key = usable(key);
  const Bucket b = bucket_of(rate_per_s, burst);
  for (;;) {
    uint32_t i = find_or_insert(key, now_ns);
    if (i == kNone) {
      untracked_.fetch_add(1, kRelaxed);
      return {true, 0, false};
    }
    Slot& s = slots_[i];
    Take result{true, 0, true};
    int64_t tat = s.tat.load(kSeq);
    for (;;) {
      int64_t from = std::max(tat, now_ns);
      if (from - now_ns > b.tolerance_ns) {
        // The next token is back when tat - now = tolerance.
        int64_t wait_ns = from - b.tolerance_ns - now_ns;
        int64_t secs = (wait_ns + 999'999'999) / 1'000'000'000;
        result = {false, static_cast<uint32_t>(std::clamp<int64_t>(secs, 1, UINT32_MAX)), true};
        break;
      }
      if (s.tat.compare_exchange_weak(tat, from + b.interval_ns, kSeq)) break;
    }
    // Reclaimed under us: our token (if taken) went to the new key; take one of our own.
    if (s.key.load(kSeq) != key) continue;
    s.last_used.store(now_ns, kRelaxed);
    if (taken_ && result.allowed) taken_[i].fetch_add(1, kRelaxed);
    return result;
  }
}

size_t ClientTable::drain_taken(std::vector<Taken>& out, size_t max) {
  if (!taken_) return 0;
  size_t found = 0;
  uint32_t i = drain_cursor_;
  for (uint32_t n = 0; n < capacity_ && found < max; ++n, i = next(i)) {
    if (taken_[i].load(kRelaxed) == 0) continue;
    uint32_t tokens = taken_[i].exchange(0, kRelaxed);
    uint64_t key = slots_[i].key.load(std::memory_order_acquire);
    // A slot being reclaimed: its tokens were its old key's, long idle; nothing to share.
    if (tokens == 0 || key == kEmpty || key == kReclaiming) continue;
    out.push_back({i, key, tokens});
    ++found;
  }
  drain_cursor_ = i;
  return found;
}

void ClientTable::charge(uint32_t slot, uint64_t key, int64_t debt_ns, double rate_per_s,
                         int64_t now_ns) {
  if (!taken_ || slot >= capacity_ || debt_ns <= 0) return;
  Slot& s = slots_[slot];
  if (s.key.load(kSeq) != key) return;
  const Bucket b = bucket_of(rate_per_s, 1);
  // Tokens granted here since the drain are in tat already but not yet in the fleet's debt.
  double ahead = static_cast<double>(debt_ns) + static_cast<double>(taken_[slot].load(kRelaxed)) *
                                                    static_cast<double>(b.interval_ns);
  int64_t target = now_ns + static_cast<int64_t>(std::min(ahead, 0x1p61));  // no overflow
  int64_t tat = s.tat.load(kSeq);
  while (tat < target && !s.tat.compare_exchange_weak(tat, target, kSeq)) {
  }
  // Like take(): a reclaim that raced us leaves the debt to the new key (towards refusing, for
  // one sync interval at most); the reclaimer's re-check of tat sees a moved tat and backs off.
}

size_t ClientTable::collect_conns(std::vector<ConnCount>& out, size_t max) {
  if (!others_) return 0;
  // Find the slots with connections not listed yet (a bounded scan a round).
  const uint32_t scan = static_cast<uint32_t>(std::min<size_t>(capacity_, kScanPerRound));
  uint32_t i = scan_cursor_;
  for (uint32_t n = 0; n < scan; ++n, i = next(i)) {
    if (slots_[i].conns.load(kRelaxed) == 0) continue;
    uint64_t key = slots_[i].key.load(std::memory_order_acquire);
    if (key > kReclaiming) sync_.try_emplace(i, SyncState{key, 0});
  }
  scan_cursor_ = i;

  // The listed slots, from where the last round stopped: drop those with nothing left to say,
  // append the others while there is room.
  size_t remaining = sync_.size();
  size_t added = 0;
  auto it = sync_.lower_bound(sync_cursor_);
  while (remaining-- > 0) {
    if (it == sync_.end()) it = sync_.begin();
    const uint32_t slot = it->first;
    SyncState& st = it->second;
    const uint64_t key = slots_[slot].key.load(std::memory_order_acquire);
    if (key != st.key) {
      // Reclaimed by another key (it had no connection here): withdraw the old key's count if one
      // was published, and forget the slot (a scan lists it again if the new key gets connections).
      if (st.published > 0) {
        if (added >= max) {  // no room this round: withdraw it on the next
          ++it;
          continue;
        }
        out.push_back({slot, st.key, 0});
        ++added;
        sync_cursor_ = slot + 1;
      }
      // Only this thread stores a non-zero `others`, and only for listed slots: whatever the
      // key is now (the new one, or the old one put back by an abandoned reclaim), 0 is right
      // for an unlisted slot.
      others_[slot].store(0, kSeq);
      it = sync_.erase(it);
      continue;
    }
    const uint32_t conns = slots_[slot].conns.load(kRelaxed);
    if (conns == 0 && st.published == 0 && others_[slot].load(kRelaxed) == 0) {
      it = sync_.erase(it);  // no connection here nor (at the last round) anywhere else
      continue;
    }
    if (added < max) {
      out.push_back({slot, key, conns});
      ++added;
      st.published = conns;
      sync_cursor_ = slot + 1;
    }
    ++it;
  }
  return sync_.size();
}

void ClientTable::set_others(uint32_t slot, uint64_t key, uint32_t others) {
  if (!others_ || slot >= capacity_) return;
  if (slots_[slot].key.load(kSeq) != key) return;
  others_[slot].store(others, kSeq);
  // A reclaim between the check and the store zeroed `others` before storing its key: see it.
  if (slots_[slot].key.load(kSeq) != key) others_[slot].store(0, kSeq);
}

void ClientTable::adopt(uint64_t key, uint32_t others, int64_t now_ns) {
  if (!others_) return;
  key = usable(key);
  const uint32_t i = find_or_insert(key, now_ns);
  if (i == kNone) return;  // the bound: not adopted (admitted on local counts, as untracked)
  // Listed already: for this key its own round tells the count; for a previous key of the
  // slot, the next collect_conns drops it and the next round adopts this one.
  if (!sync_.try_emplace(i, SyncState{key, 0}).second) return;
  set_others(i, key, others);
}

void ClientTable::clear_others() {
  if (!others_) return;
  for (const auto& [slot, st] : sync_)
    others_[slot].store(0, kSeq);
}

}  // namespace weir::model
