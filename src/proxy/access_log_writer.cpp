// The access-log writer: per-worker rings drained by one thread into per-destination batches.
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "core/log.hpp"
#include "proxy/access_log.hpp"

namespace weir::proxy {

namespace {

// A record in a ring: this header, the line, padding to 8 bytes. A header with kWrap says "the
// rest of the ring is padding": records never wrap, so a line is always one piece.
struct RecordHeader {
  uint32_t size;
  int32_t destination;
};
static_assert(sizeof(RecordHeader) == 8);
constexpr int32_t kWrap = -1;

constexpr size_t padded(size_t n) {
  return (n + 7) & ~size_t{7};
}

std::string errno_text(int err) {
  return std::generic_category().message(err);
}

// memchr (vectorized in glibc) rather than a byte loop: this runs over every byte written.
uint64_t count_lines(const char* p, size_t n) {
  uint64_t lines = 0;
  const char* end = p + n;
  while (p < end) {
    const void* nl = std::memchr(p, '\n', static_cast<size_t>(end - p));
    if (!nl) break;
    ++lines;
    p = static_cast<const char*>(nl) + 1;
  }
  return lines;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Producer (worker thread)

AccessLogProducer::AccessLogProducer(size_t buffer_bytes, int wake_fd)
    : buf_(new char[std::max<size_t>(buffer_bytes & ~size_t{7}, 64)]),
      cap_(std::max<size_t>(buffer_bytes & ~size_t{7}, 64)),
      wake_fd_(wake_fd) {}

bool AccessLogProducer::log(int destination, LogFormat format, const AccessRecord& r) {
  if (destination < 0) return false;
  scratch_.clear();
  format_line(format, r, scratch_);
  return submit(destination, scratch_);
}

bool AccessLogProducer::submit(int destination, std::string_view line) {
  if (destination < 0) return false;
  bool add_newline = line.empty() || line.back() != '\n';
  size_t body = add_newline ? line.size() : line.size() - 1;
  // One line, one record: a second '\n' would let a caller write two lines as one.
  if (std::memchr(line.data(), '\n', body) != nullptr) {
    drop();
    return false;
  }
  size_t size = line.size() + (add_newline ? 1 : 0);
  size_t need = sizeof(RecordHeader) + padded(size);
  if (need > cap_ || size > UINT32_MAX) {
    drop();
    return false;
  }
  uint64_t head = head_.load(std::memory_order_relaxed);
  size_t at = head % cap_;
  size_t to_end = cap_ - at;
  size_t total = need <= to_end ? need : to_end + need;
  if (head + total - cached_tail_ > cap_) {
    cached_tail_ = tail_.load(std::memory_order_acquire);
    if (head + total - cached_tail_ > cap_) {
      drop();
      return false;
    }
  }
  char* buf = buf_.get();
  if (need > to_end) {
    RecordHeader wrap{0, kWrap};
    std::memcpy(buf + at, &wrap, sizeof wrap);
    head += to_end;
    at = 0;
  }
  RecordHeader h{static_cast<uint32_t>(size), destination};
  std::memcpy(buf + at, &h, sizeof h);
  std::memcpy(buf + at + sizeof h, line.data(), line.size());
  if (add_newline) buf[at + sizeof h + line.size()] = '\n';
  head += need;
  head_.store(head, std::memory_order_release);

  // Past half full: wake the writer now rather than at its next tick, once per writer pass.
  if (head - cached_tail_ > cap_ / 2 && !wake_sent_.load(std::memory_order_relaxed)) {
    cached_tail_ = tail_.load(std::memory_order_acquire);
    if (head - cached_tail_ > cap_ / 2) {
      wake_sent_.store(true, std::memory_order_relaxed);
      uint64_t one = 1;
      ssize_t n = ::write(wake_fd_, &one, sizeof one);
      (void)n;  // EAGAIN: the counter is already far from zero, the writer is awake
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

enum class Kind : uint8_t {
  File,         // a regular file: write(2) may wait for the disk, never for a reader
  NonBlocking,  // our own pipe/socket/device descriptor (O_NONBLOCK): write until EAGAIN
  Guarded,      // a blocking pipe or socket we do not own (stdout): poll, then PIPE_BUF at most
};

Kind kind_of(int fd) {
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) return Kind::File;
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0 && (flags & O_NONBLOCK)) return Kind::NonBlocking;
  return Kind::Guarded;
}

}  // namespace

struct AccessLogWriter::Destination {
  std::string path;
  bool is_stdout = false;
  std::atomic<int> handoff{-1};      // a descriptor opened by destination(), for the writer
  std::atomic<bool> retired{false};  // retain() left it out: closed at the next reopen()
  // Writer thread only (set before publication for a new destination).
  int fd = -1;
  Kind kind = Kind::File;
  std::string stage;  // whole lines waiting for write(2); stage[sent..] is not written yet
  size_t sent = 0;
  bool mid_line = false;      // a failed write cut a line: start the next write with '\n'
  bool failing = false;       // warned about a write error; reset (with a note) once it works
  bool pollout_woke = false;  // the last wait ended because this descriptor looked writable
  bool no_pollout = false;    // ...and then took nothing: do not poll it until it takes bytes

  bool pending() const { return sent < stage.size(); }
};

namespace {

AccessLogWriter::Options checked(AccessLogWriter::Options o) {
  if (o.flush_interval.count() <= 0) o.flush_interval = std::chrono::milliseconds(1);
  if (o.stage_bytes < 4096) o.stage_bytes = 4096;
  return o;
}

}  // namespace

AccessLogWriter::AccessLogWriter(size_t workers, Options options)
    : options_(checked(std::move(options))),
      dests_(std::make_unique<std::unique_ptr<Destination>[]>(kMaxDestinations)) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "access log eventfd");
  producers_.reserve(workers);
  for (size_t i = 0; i < workers; ++i)
    producers_.emplace_back(new AccessLogProducer(options_.worker_buffer_bytes, wake_fd_));
  // The thread takes no signal: the runtime's signal thread does (and SIGPIPE becomes EPIPE).
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  thread_ = std::thread([this] { run(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

AccessLogWriter::~AccessLogWriter() {
  stop_.store(true, std::memory_order_release);
  wake();
  thread_.join();
  size_t n = count_.load(std::memory_order_acquire);
  for (size_t i = 0; i < n; ++i) {
    Destination& d = *dests_[i];
    if (d.fd >= 0 && !d.is_stdout) ::close(d.fd);
    int h = d.handoff.exchange(-1);
    if (h >= 0) ::close(h);
  }
  ::close(wake_fd_);
}

int AccessLogWriter::destination(std::string_view path, std::string& error) {
  if (path.empty()) {
    error = "access log path is empty";
    return -1;
  }
  std::lock_guard lock(ctl_mu_);
  bool is_stdout = path == "stdout";
  int fd = 1;
  if (!is_stdout) {
    std::string p(path);
    // O_NONBLOCK: opening a FIFO nobody reads fails (ENXIO) instead of hanging the reload, and a
    // pipe or socket of our own never blocks the writer; a regular file ignores it.
    fd = ::open(p.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0640);
    if (fd < 0) {
      error = fmt::format("open {}: {}", path, errno_text(errno));
      return -1;
    }
  }
  if (auto it = ids_.find(path); it != ids_.end()) {
    Destination& d = *dests_[it->second];
    d.retired.store(false, std::memory_order_relaxed);
    if (!is_stdout) {
      int old = d.handoff.exchange(fd, std::memory_order_acq_rel);
      if (old >= 0) ::close(old);
      wake();
    }
    return it->second;
  }
  size_t id = count_.load(std::memory_order_relaxed);
  if (id >= kMaxDestinations) {
    if (!is_stdout) ::close(fd);
    error = fmt::format("access log {}: too many distinct access log paths (at most {})", path,
                        kMaxDestinations);
    return -1;
  }
  auto d = std::make_unique<Destination>();
  d->path = std::string(path);
  d->is_stdout = is_stdout;
  d->fd = fd;
  d->kind = kind_of(fd);
  dests_[id] = std::move(d);
  ids_.emplace(std::string(path), static_cast<int>(id));
  count_.store(id + 1, std::memory_order_release);
  return static_cast<int>(id);
}

void AccessLogWriter::retain(std::span<const int> in_use) {
  std::lock_guard lock(ctl_mu_);
  size_t n = count_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < n; ++i) {
    bool keep = dests_[i]->is_stdout ||
                std::find(in_use.begin(), in_use.end(), static_cast<int>(i)) != in_use.end();
    dests_[i]->retired.store(!keep, std::memory_order_relaxed);
  }
}

void AccessLogWriter::reopen() {
  reopen_.store(true, std::memory_order_release);
  wake();
}

uint64_t AccessLogWriter::dropped() const {
  uint64_t n = writer_dropped_.load(std::memory_order_relaxed);
  for (const auto& p : producers_)
    n += p->dropped();
  return n;
}

void AccessLogWriter::flush_for_tests() {
  uint64_t mine = flush_asked_.fetch_add(1, std::memory_order_acq_rel) + 1;
  wake();
  std::unique_lock lock(flush_mu_);
  flush_cv_.wait(lock, [&] { return flush_done_ >= mine; });
}

void AccessLogWriter::wake() const {
  uint64_t one = 1;
  ssize_t n = ::write(wake_fd_, &one, sizeof one);
  (void)n;
}

// ---------------------------------------------------------------------------------------------
// The writer thread

void AccessLogWriter::run() {
  pthread_setname_np(pthread_self(), "weir-accesslog");
  auto deadline = std::chrono::steady_clock::time_point::max();
  for (;;) {
    bool stopping = stop_.load(std::memory_order_acquire);
    bool rings_empty = pass(stopping);
    if (!stopping) {
      wait(options_.flush_interval);
      continue;
    }
    if (rings_empty && staged_empty()) break;
    auto now = std::chrono::steady_clock::now();
    if (deadline == std::chrono::steady_clock::time_point::max())
      deadline = now + options_.shutdown_grace;
    if (now >= deadline) {
      for (size_t i = 0; i < seen_count_; ++i)
        if (dests_[i]->pending()) give_up(*dests_[i], "shutting down, it takes no more");
      break;
    }
    wait(std::chrono::milliseconds(10));
  }
}

// One round: take new descriptors, reopen if asked, move every ring's records into the batches,
// write the batches. Returns whether every ring was empty at the end.
bool AccessLogWriter::pass(bool stopping) {
  if (options_.before_pass && !stopping) options_.before_pass();
  uint64_t flush_asked = flush_asked_.load(std::memory_order_acquire);
  bool want_reopen = reopen_.exchange(false, std::memory_order_acq_rel);
  seen_count_ = count_.load(std::memory_order_acquire);
  for (size_t i = 0; i < seen_count_; ++i) {
    int fd = dests_[i]->handoff.exchange(-1, std::memory_order_acq_rel);
    if (fd >= 0) install(*dests_[i], fd);
  }
  if (want_reopen) reopen_all();

  for (auto& p : producers_)
    drain(*p);
  for (size_t i = 0; i < seen_count_; ++i) {
    Destination& d = *dests_[i];
    if (d.pending()) write_out(d, d.kind == Kind::File);
  }
  warn_drops();

  if (staged_empty()) {
    std::lock_guard lock(flush_mu_);
    if (flush_asked > flush_done_) {
      flush_done_ = flush_asked;
      flush_cv_.notify_all();
    }
  }
  bool empty = true;
  for (auto& p : producers_)
    empty = empty &&
            p->head_.load(std::memory_order_acquire) == p->tail_.load(std::memory_order_relaxed);
  return empty;
}

void AccessLogWriter::drain(AccessLogProducer& p) {
  uint64_t head = p.head_.load(std::memory_order_acquire);
  uint64_t tail = p.tail_.load(std::memory_order_relaxed);
  const char* buf = p.buf_.get();
  while (tail != head) {
    size_t at = tail % p.cap_;
    RecordHeader h;
    std::memcpy(&h, buf + at, sizeof h);
    if (h.destination == kWrap) {
      tail += p.cap_ - at;
      continue;
    }
    route(h.destination, std::string_view(buf + at + sizeof h, h.size));
    tail += sizeof h + padded(h.size);
    // Each record's space goes back at once: route() may wait on a disk.
    p.tail_.store(tail, std::memory_order_release);
  }
  p.tail_.store(tail, std::memory_order_release);
  p.wake_sent_.store(false, std::memory_order_relaxed);
}

void AccessLogWriter::route(int id, std::string_view line) {
  if (id < 0) {
    writer_dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  auto at = static_cast<size_t>(id);
  if (at >= seen_count_) seen_count_ = count_.load(std::memory_order_acquire);
  if (at >= seen_count_) {
    writer_dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  Destination& d = *dests_[at];
  if (d.fd < 0) {
    int fd = d.handoff.exchange(-1, std::memory_order_acq_rel);
    if (fd >= 0) install(d, fd);
  }
  if (d.fd < 0) {  // retired and closed by reopen()
    writer_dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (d.stage.size() + line.size() > options_.stage_bytes) {
    write_out(d, d.kind == Kind::File);
    if (d.sent > 0) {  // a pipe took part of the batch: make room at the front
      d.stage.erase(0, d.sent);
      d.sent = 0;
    }
    // A File batch is empty now (written or given up); a pipe may still be full.
    if (!d.stage.empty() && d.stage.size() + line.size() > options_.stage_bytes) {
      writer_dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  if (d.stage.capacity() < options_.stage_bytes) d.stage.reserve(options_.stage_bytes);
  d.stage.append(line);
}

void AccessLogWriter::install(Destination& d, int fd) {
  if (d.fd >= 0) {
    if (d.pending()) write_out(d, d.kind == Kind::File);  // the rest goes to `fd`
    if (!d.is_stdout) ::close(d.fd);
  }
  d.fd = fd;
  d.kind = kind_of(fd);
  d.no_pollout = false;
}

void AccessLogWriter::reopen_all() {
  for (size_t i = 0; i < seen_count_; ++i) {
    Destination& d = *dests_[i];
    if (d.is_stdout) continue;
    if (d.retired.load(std::memory_order_relaxed)) {
      if (d.fd < 0) continue;
      if (d.pending()) write_out(d, d.kind == Kind::File);
      if (d.pending()) give_up(d, "closed (no longer configured)");
      ::close(d.fd);
      d.fd = -1;
      log::info("access log {}: closed, no longer configured", d.path);
      continue;
    }
    int fd = ::open(d.path.c_str(),
                    O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0640);
    if (fd < 0) {
      log::warn("access log: reopen {}: {} (still writing to the file open before)", d.path,
                errno_text(errno));
      continue;
    }
    install(d, fd);
  }
}

// Writes d.stage[d.sent..]. A File is written to the end (`block`); a pipe or socket as far as
// it takes now. An error gives up the batch (counted) and warns once until writing works again.
void AccessLogWriter::write_out(Destination& d, bool block) {
  bool woke = d.pollout_woke;
  d.pollout_woke = false;
  size_t before = d.sent;
  auto ready = [&]() {
    if (d.kind != Kind::Guarded) return true;
    pollfd pfd{d.fd, POLLOUT, 0};
    int r;
    do {
      r = ::poll(&pfd, 1, 0);
    } while (r < 0 && errno == EINTR);
    return r != 0;  // writable, or an error the write will report
  };
  if (d.mid_line) {
    if (!ready()) return;
    ssize_t n;
    do {
      n = ::write(d.fd, "\n", 1);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0) return give_up(d, "write: " + errno_text(errno));
    d.mid_line = false;
  }
  while (d.pending()) {
    if (!ready()) break;
    size_t left = d.stage.size() - d.sent;
    if (d.kind == Kind::Guarded) left = std::min<size_t>(left, PIPE_BUF);
    ssize_t n = ::write(d.fd, d.stage.data() + d.sent, left);
    if (n > 0) {
      written_.fetch_add(count_lines(d.stage.data() + d.sent, static_cast<size_t>(n)),
                         std::memory_order_relaxed);
      d.sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN && d.kind != Kind::File) break;
    if (n < 0 && errno == EAGAIN && block) continue;  // a File never says EAGAIN; be safe anyway
    return give_up(d, n == 0 ? std::string("write: wrote nothing") : "write: " + errno_text(errno));
  }
  if (d.sent > before) {
    d.no_pollout = false;
    if (d.failing) {
      d.failing = false;
      log::info("access log {}: writing again", d.path);
    }
  } else if (woke) {
    d.no_pollout = true;  // looked writable but took nothing: do not let poll() spin on it
  }
  if (!d.pending()) {
    d.stage.clear();
    d.sent = 0;
  }
}

void AccessLogWriter::give_up(Destination& d, std::string_view why) {
  if (d.sent > 0 && d.stage[d.sent - 1] != '\n') d.mid_line = true;
  uint64_t lost = count_lines(d.stage.data() + d.sent, d.stage.size() - d.sent);
  writer_dropped_.fetch_add(lost, std::memory_order_relaxed);
  d.stage.clear();
  d.sent = 0;
  if (!d.failing) {
    d.failing = true;
    log::warn("access log {}: {}; dropping its lines until it works again", d.path, why);
  }
}

bool AccessLogWriter::staged_empty() const {
  for (size_t i = 0; i < seen_count_; ++i)
    if (dests_[i]->pending()) return false;
  return true;
}

void AccessLogWriter::wait(std::chrono::milliseconds timeout) {
  pollfd fds[1 + kMaxDestinations];
  Destination* owners[1 + kMaxDestinations];
  size_t n = 0;
  fds[n++] = pollfd{wake_fd_, POLLIN, 0};
  for (size_t i = 0; i < seen_count_; ++i) {
    Destination& d = *dests_[i];
    if (d.pending() && d.fd >= 0 && d.kind != Kind::File && !d.no_pollout) {
      owners[n] = &d;
      fds[n++] = pollfd{d.fd, POLLOUT, 0};
    }
  }
  int r = ::poll(fds, n, static_cast<int>(timeout.count()));
  if (r <= 0) return;
  if (fds[0].revents & POLLIN) {
    uint64_t v;
    ssize_t got = ::read(wake_fd_, &v, sizeof v);
    (void)got;
  }
  for (size_t i = 1; i < n; ++i)
    if (fds[i].revents) owners[i]->pollout_woke = true;
}

void AccessLogWriter::warn_drops() {
  uint64_t by_workers = 0;
  for (const auto& p : producers_)
    by_workers += p->dropped();
  if (by_workers == warned_dropped_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - warned_at_ < std::chrono::seconds(10)) return;
  log::warn(
      "access log: {} lines dropped by workers since the last note (buffer full: the writer "
      "fell behind; or a line longer than the buffer)",
      by_workers - warned_dropped_);
  warned_dropped_ = by_workers;
  warned_at_ = now;
}

}  // namespace weir::proxy
