#include "cluster/redis_sync.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "core/log.hpp"
#include "model/snapshot.hpp"

namespace weir::cluster {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kConnectTimeout = 1000 * kMs;
constexpr int64_t kMinRoundTimeout = 1000 * kMs;
constexpr int64_t kFirstBackoff = 100 * kMs;
constexpr int64_t kMaxBackoff = 2000 * kMs;

RedisSync* self_of(void* p) {
  return static_cast<RedisSync*>(p);
}

}  // namespace

RedisSync::RedisSync() : wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

RedisSync::~RedisSync() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void RedisSync::update(const model::Snapshot& snap) {
  std::optional<Settings> settings;
  if (snap.config && snap.config->cluster) {
    Settings s{*snap.config->cluster, {}};
    for (const auto& lr : snap.listeners) {
      const auto& cl = lr.cfg->client_limits;
      if (cl && cl->shared && (cl->rate > 0 || cl->max_connections > 0) && lr.clients) {
        s.limits.push_back({lr.cfg->name, lr.clients, cl->rate, cl->burst, cl->max_connections});
      }
    }
    settings = std::move(s);
  }
  std::lock_guard lock(mu_);
  if (stopping_) return;
  if (settings && up_.load(std::memory_order_relaxed) < 0) up_.store(0);
  if (!settings) up_.store(-1);
  pending_ = std::move(settings);
  has_pending_ = true;
  if (!thread_.joinable() && pending_) thread_ = std::thread([this] { run(); });
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

void RedisSync::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
  }
  if (thread_.joinable()) thread_.join();
}

int64_t RedisSync::now_ns() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void RedisSync::run() {
  pthread_setname_np(pthread_self(), "weir-cluster");
  while (turn()) {
  }
  drop();
}

void RedisSync::take_settings() {
  std::optional<Settings> s;
  {
    std::lock_guard lock(mu_);
    if (!has_pending_) return;
    s = std::move(pending_);
    pending_.reset();
    has_pending_ = false;
  }
  const bool same = s && cluster_ && s->cluster.redis == cluster_->redis &&
                    s->cluster.unix_path == cluster_->unix_path &&
                    s->cluster.prefix == cluster_->prefix &&
                    s->cluster.sync_interval == cluster_->sync_interval;
  if (!same) {
    drop();
    if (cluster_) log::info("cluster: leaving Redis {}", cluster_->redis);
    cluster_.reset();
    sync_.reset();
    known_ = Known::Unknown;
    backoff_ns_ = 0;
    next_connect_ = 0;
    if (s) {
      cluster_ = s->cluster;
      sync_.emplace(cluster_->prefix, cluster_->sync_interval);
      next_round_ = now_ns() + cluster_->sync_interval.count() * kMs;
    }
  }
  if (sync_ && s) sync_->set_limits(std::move(s->limits));
}

bool RedisSync::turn() {
  take_settings();
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
  }
  int64_t now = now_ns();
  int64_t wake_at = -1;  // steady ns; -1 = only the eventfd
  if (cluster_) {
    const int64_t interval = cluster_->sync_interval.count() * kMs;
    const int64_t round_timeout = std::max(kMinRoundTimeout, 3 * interval);
    if (ctx_ && !connected_ && now - connect_started_ >= kConnectTimeout) {
      drop();
      failed("no connection within 1 s");
    } else if (ctx_ && in_flight_ && now - batch_.sent_ns >= round_timeout) {
      drop();
      failed(fmt::format("no answer within {} ms", round_timeout / kMs));
    }
    if (!ctx_ && now >= next_connect_) connect();
    if (now >= next_round_) {
      next_round_ = now + interval;
      if (ctx_ && connected_ && !in_flight_) {
        send_round();
      } else if (!ctx_ || !connected_) {
        sync_->discard();  // limits on local counts only meanwhile
      }                    // else: the last round is still out; the counts wait for the next one
    }
    wake_at = next_round_;
    if (!ctx_) wake_at = std::min(wake_at, next_connect_);
    if (ctx_ && !connected_) wake_at = std::min(wake_at, connect_started_ + kConnectTimeout);
    if (ctx_ && in_flight_) wake_at = std::min(wake_at, batch_.sent_ns + round_timeout);
  }

  pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {-1, 0, 0}};
  nfds_t nfds = 1;
  if (ctx_) {
    fds[1].fd = ctx_->c.fd;
    fds[1].events = static_cast<short>((want_read_ ? POLLIN : 0) | (want_write_ ? POLLOUT : 0));
    nfds = 2;
  }
  int timeout_ms = -1;
  if (wake_at >= 0) {
    int64_t ms = (std::max<int64_t>(wake_at - now_ns(), 0) + kMs - 1) / kMs;
    timeout_ms = static_cast<int>(std::min<int64_t>(ms, 60'000));
  }
  int n = ::poll(fds, nfds, timeout_ms);
  if (n < 0) return errno == EINTR;
  if (fds[0].revents != 0) {
    uint64_t v = 0;
    [[maybe_unused]] ssize_t r = ::read(wake_fd_, &v, sizeof v);
  }
  if (nfds == 2 && ctx_ && fds[1].revents != 0) {
    const short ev = fds[1].revents;
    if (ev & (POLLIN | POLLERR | POLLHUP)) redisAsyncHandleRead(ctx_);
    if (ctx_ && (ev & (POLLOUT | POLLERR))) redisAsyncHandleWrite(ctx_);
    if (ctx_ && drop_) {
      drop();
      failed(error_);
    } else if (!ctx_) {
      failed(error_.empty() ? "connection closed" : error_);  // hiredis freed it
    }
  }
  return true;
}

void RedisSync::connect() {
  error_.clear();
  drop_ = false;
  connected_ = false;
  want_read_ = want_write_ = false;
  redisAsyncContext* ac = cluster_->unix_path.empty()
                              ? redisAsyncConnect(cluster_->host.c_str(), cluster_->port)
                              : redisAsyncConnectUnix(cluster_->unix_path.c_str());
  if (ac == nullptr) {
    failed("out of memory");
    return;
  }
  if (ac->err != 0) {
    std::string why = ac->errstr != nullptr ? ac->errstr : "cannot connect";
    redisAsyncFree(ac);
    failed(why);
    return;
  }
  ac->data = this;
  ac->ev.data = this;
  ac->ev.addRead = [](void* p) { self_of(p)->want_read_ = true; };
  ac->ev.delRead = [](void* p) { self_of(p)->want_read_ = false; };
  ac->ev.addWrite = [](void* p) { self_of(p)->want_write_ = true; };
  ac->ev.delWrite = [](void* p) { self_of(p)->want_write_ = false; };
  ac->ev.cleanup = [](void* p) {
    RedisSync* s = self_of(p);
    s->ctx_ = nullptr;
    s->connected_ = false;
    s->want_read_ = s->want_write_ = false;
  };
  ctx_ = ac;
  connect_started_ = now_ns();
  // Setting the connect callback asks for writability: the connect's completion.
  redisAsyncSetConnectCallback(ac, &RedisSync::on_connect);
  redisAsyncSetDisconnectCallback(ac, &RedisSync::on_disconnect);
}

void RedisSync::on_connect(const redisAsyncContext* ac, int status) {
  RedisSync* s = self_of(ac->data);
  if (status == REDIS_OK) {
    s->connected_ = true;
    log::debug("cluster: connected to Redis {}", s->cluster_->redis);
  } else {
    s->error_ = ac->errstr != nullptr && ac->errstr[0] != '\0' ? ac->errstr : "connection failed";
  }
}

void RedisSync::on_disconnect(const redisAsyncContext* ac, int status) {
  RedisSync* s = self_of(ac->data);
  if (status != REDIS_OK && s->error_.empty() && ac->errstr != nullptr && ac->errstr[0] != '\0') {
    s->error_ = ac->errstr;
  }
}

void RedisSync::drop() {
  if (ctx_ != nullptr) redisAsyncFree(ctx_);  // pending rounds get a null reply; cleanup hook
  ctx_ = nullptr;
  connected_ = false;
  in_flight_ = false;
  drop_ = false;
  batch_.limits.clear();
}

void RedisSync::failed(const std::string& why) {
  in_flight_ = false;
  batch_.limits.clear();
  if (sync_) sync_->discard();  // the others' connections, no longer heard of
  up_.store(0, std::memory_order_relaxed);
  if (known_ != Known::Down) {
    log::warn(
        "cluster: Redis {} unreachable ({}); shared client limits count on this instance only "
        "until it is back",
        cluster_->redis, why);
    known_ = Known::Down;
  } else {
    log::debug("cluster: Redis {} still unreachable ({})", cluster_->redis, why);
  }
  backoff_ns_ = std::clamp(backoff_ns_ * 2, kFirstBackoff, kMaxBackoff);
  next_connect_ = now_ns() + backoff_ns_;
}

void RedisSync::synced() {
  backoff_ns_ = 0;
  up_.store(1, std::memory_order_relaxed);
  if (known_ == Known::Down) {
    log::info("cluster: Redis {} reachable again; client limits are shared again", cluster_->redis);
  } else if (known_ == Known::Unknown) {
    log::info("cluster: client limits shared through Redis {} (prefix \"{}\", every {} ms)",
              cluster_->redis, cluster_->prefix, cluster_->sync_interval.count());
  }
  known_ = Known::Up;
}

void RedisSync::send_round() {
  sync_->collect(batch_);
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(batch_.args.size());
  lens.reserve(batch_.args.size());
  for (const auto& a : batch_.args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  batch_.sent_ns = now_ns();
  if (redisAsyncCommandArgv(ctx_, &RedisSync::reply_cb, this, static_cast<int>(argv.size()),
                            argv.data(), lens.data()) != REDIS_OK) {
    drop();
    failed("cannot send");
    return;
  }
  in_flight_ = true;
}

void RedisSync::reply_cb(redisAsyncContext*, void* reply, void* self) {
  self_of(self)->on_reply(reply);
}

void RedisSync::on_reply(void* r) {
  in_flight_ = false;
  const auto* reply = static_cast<const redisReply*>(r);
  if (reply == nullptr) {  // the connection went: the loop reports it
    batch_.limits.clear();
    return;
  }
  if (reply->type == REDIS_REPLY_ARRAY && reply->elements == LimitSync::answer_size(batch_)) {
    const size_t numbers = LimitSync::answer_numbers(batch_);
    std::vector<int64_t> answer(numbers, 0);
    for (size_t i = 0; i < numbers; ++i) {
      const redisReply* e = reply->element[i];
      if (e != nullptr && e->type == REDIS_REPLY_INTEGER) answer[i] = e->integer;
    }
    std::vector<std::vector<uint64_t>> full(reply->elements - numbers);
    for (size_t i = numbers; i < reply->elements; ++i) {
      const redisReply* a = reply->element[i];
      if (a == nullptr || a->type != REDIS_REPLY_ARRAY) continue;
      for (size_t j = 0; j < a->elements; ++j) {
        const redisReply* m = a->element[j];
        uint64_t key = 0;
        if (m != nullptr && m->type == REDIS_REPLY_STRING &&
            LimitSync::parse_key(std::string_view(m->str, m->len), key)) {
          full[i - numbers].push_back(key);
        }
      }
    }
    int64_t now = now_ns();
    // The debt was measured between sending and now: charge it as of halfway.
    LimitSync::apply(batch_, answer, full, batch_.sent_ns + (now - batch_.sent_ns) / 2);
    synced();
  } else if (reply->type == REDIS_REPLY_ERROR) {
    error_ = std::string("Redis answered: ") + std::string(reply->str, reply->len);
    drop_ = true;
  } else {
    error_ = "unexpected answer from Redis";
    drop_ = true;
  }
  batch_.limits.clear();
}

}  // namespace weir::cluster
