#pragma once
// The `cluster:` thread (fleet.md): one connection to the fleet's Redis, driven by hiredis's
// asynchronous API from a poll() loop of its own, that runs a LimitSync round (limit_sync.hpp)
// every cluster.sync_interval. Workers never wait for it: they count in their ClientTable and
// this thread merges the counts.
//
// Redis unreachable (connect refused or not answered within 1 s, a round not answered within
// max(1 s, 3 × sync_interval), an error reply): the connection is dropped, counts are drained
// and forgotten every interval and the other instances' connection counts are forgotten at once
// (each instance limits on its own), `weir_cluster_up` is 0, and
// one warning is logged; reconnects back off from 100 ms to 2 s. The first answered round logs
// one info line ("shared again") and sets `weir_cluster_up` 1.
//
// A host name in `redis` is resolved by hiredis (getaddrinfo) on this thread, never a worker's.
#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "cluster/limit_sync.hpp"
#include "config/config.hpp"

struct redisAsyncContext;

namespace weir::model {
struct Snapshot;
}

namespace weir::cluster {

class RedisSync {
 public:
  RedisSync();
  ~RedisSync();  // stop()
  RedisSync(const RedisSync&) = delete;
  RedisSync& operator=(const RedisSync&) = delete;

  // At start and on every reload or rebuild: the snapshot's `cluster` and its listeners with
  // `shared: true`. New Redis settings reconnect; no `cluster` disconnects. Starts the thread
  // the first time a snapshot has a cluster.
  void update(const model::Snapshot& snap);
  void stop();

  // weir_cluster_up: -1 = no cluster configured, 0 = not synced, 1 = the last round answered.
  int up() const { return up_.load(std::memory_order_relaxed); }

 private:
  struct Settings {
    config::Cluster cluster;
    std::vector<SharedLimit> limits;
  };
  void run();
  // One turn of the loop; false to stop.
  bool turn();
  void take_settings();
  void connect();
  void drop();  // frees the connection (pending rounds are lost)
  void failed(const std::string& why);
  void synced();
  void send_round();
  void on_reply(void* reply);
  int64_t now_ns() const;

  static void on_connect(const redisAsyncContext* ac, int status);
  static void on_disconnect(const redisAsyncContext* ac, int status);
  static void reply_cb(redisAsyncContext* ac, void* reply, void* self);

  // Shared with update()/stop().
  std::mutex mu_;
  std::optional<Settings> pending_;
  bool has_pending_ = false;
  bool stopping_ = false;
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<int> up_{-1};

  // The thread's own.
  std::optional<config::Cluster> cluster_;
  std::optional<LimitSync> sync_;
  redisAsyncContext* ctx_ = nullptr;
  bool connected_ = false;
  bool want_read_ = false;
  bool want_write_ = false;
  std::string error_;  // why hiredis dropped the connection (its callbacks)
  bool drop_ = false;  // a reply asked for the connection to go (dropped after the callback)
  int64_t connect_started_ = 0;
  int64_t next_connect_ = 0;
  int64_t backoff_ns_ = 0;
  int64_t next_round_ = 0;
  bool in_flight_ = false;
  SyncBatch batch_;
  enum class Known : uint8_t { Unknown, Up, Down } known_ = Known::Unknown;
};

}  // namespace weir::cluster
