#pragma once
// The access log (spec/proxy.md "Access log"): one line per finished request (per connection in
// tcp mode), formatted by the worker that served it and written by one writer thread, so a worker
// never waits for a disk.
//
// Formatting (access_log_format.cpp) fills the caller's string, no iostreams; the wall-clock
// second is formatted once per thread and second. A client never forges a line: every string is
// escaped (JSON: `"`, `\`, bytes < 0x20 and 0x7f as escapes, valid UTF-8 passes through and each
// byte of invalid UTF-8 becomes \u00XX, i.e. is read back as the Latin-1 character of that byte;
// combined: NGINX's rule, `"` `\` and bytes < 0x20 or >= 0x7f as \xHH).
//
// Writing (access_log_writer.cpp):
//   worker ──AccessLogProducer::log()──▶ its own ring (single producer, single consumer)
//          ──writer thread──▶ a staging buffer per destination ──write(2)──▶ file / stdout
// - Memory: worker_buffer_bytes per worker (the ring, allocated up front; 1 MiB by default) and
//   the worker's scratch string (one line's worst case, about 512 + 6 x its strings' bytes), plus
//   stage_bytes per destination that has seen a line (the writer's batch, what a slow pipe may
//   hold; 256 KiB by default), at most kMaxDestinations of them. Nothing grows with load.
// - Drops: a line that does not fit in its worker's ring (the writer fell behind, or the line is
//   longer than the ring) is dropped by the worker; a line whose destination cannot take it (a
//   write error, a full pipe or socket whose staging buffer is full, a retired destination closed
//   by reopen()) is dropped by the writer. Both are counted in dropped(); every line handed over is
//   counted exactly once in written() or dropped() (once written out or given up).
// - Order: the lines of one worker keep their order; lines of several workers to one destination
//   interleave only at line boundaries (only the writer thread writes, whole lines, O_APPEND). A
//   write error in the middle of a line ends the cut line with '\n' before the next write, so the
//   next line starts on a line of its own.
// - Wake-ups: the writer wakes every flush_interval and when a worker's ring passes half full (one
//   non-blocking eventfd write, at most once per writer pass); a line is written within about one
//   flush_interval.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace weir::proxy {

// Why an exchange (a tcp connection in tcp mode) ended.
enum class Termination : uint8_t {
  Ok,
  ClientClosed,
  ClientTimeout,
  UpstreamRefused,
  UpstreamTimeout,
  UpstreamReset,
  NoServer,
  QueueFull,
  QueueTimeout,
  Denied,
  RateLimited,
  BadRequest,
  Local,  // weir answered itself: redirect, respond, static
};
std::string_view to_string(Termination t);  // "ok", "client_closed", ... as in proxy.md

enum class LogFormat : uint8_t { Json, Combined };

// One finished exchange, as views into the exchange's own storage: filling it allocates nothing.
// listener, client, proto, backend, server and tls are weir's own text (config names, addresses,
// static strings) and are written without escaping; every other string is escaped.
struct AccessRecord {
  int64_t time_unix_ms = 0;  // when the request started (wall clock)
  std::string_view listener;
  std::string_view client;  // "addr:port" ("[v6]:port"), after PROXY protocol
  std::string_view method;
  std::string_view host;
  std::string_view path;   // with the query
  std::string_view proto;  // "HTTP/1.1", "HTTP/2", "tcp"
  int status = 0;          // 0: no answer was sent
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  double duration_ms = 0;
  std::string_view backend;  // empty: null
  std::string_view server;   // empty: null
  double upstream_ms = -1;   // connect to response head; < 0: null
  uint32_t retries = 0;
  std::string_view request_id;  // empty: null
  std::string_view tls;         // "TLSv1.3"; empty: null
  Termination termination = Termination::Ok;
  std::string_view user_agent, referer, user;  // combined format only; empty: "-"
};

// Append one line ending in '\n' to `out`.
// JSON: the fields of proxy.md in its order; time "2026-11-30T16:04:43.123Z"; durations in ms
// with at most 3 decimals (a negative or non-finite duration_ms is written 0).
void format_json(const AccessRecord& r, std::string& out);
// NGINX/Apache combined: $remote_addr - $remote_user [$time_local] "$request" $status
// $body_bytes_sent "$http_referer" "$http_user_agent", with $remote_addr the client without its
// port, $time_local in UTC (+0000), $request "METHOD path proto" (an empty part as "-"), and
// bytes_out (the whole response, as weir counts it) for $body_bytes_sent.
void format_combined(const AccessRecord& r, std::string& out);
void format_line(LogFormat format, const AccessRecord& r, std::string& out);

// A worker's side of the writer: a ring of worker_buffer_bytes that only this worker writes and
// only the writer thread reads (lock-free, wait-free for the worker). Use it from one thread.
class AccessLogProducer {
 public:
  // Formats `r` and hands the line over for `destination` (an id from
  // AccessLogWriter::destination(); a negative id means "no log": ignored, not counted). Never
  // blocks, no allocation once the worker's scratch string has grown to a line, no syscall except
  // the rare wake-up. false: dropped (and counted).
  bool log(int destination, LogFormat format, const AccessRecord& r);
  // Hands over one finished line (copied into the ring). It ends in '\n' (added if missing); a
  // line holding another '\n' is dropped (counted): one record is one line.
  bool submit(int destination, std::string_view line);
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

  AccessLogProducer(const AccessLogProducer&) = delete;
  AccessLogProducer& operator=(const AccessLogProducer&) = delete;

 private:
  friend class AccessLogWriter;
  AccessLogProducer(size_t buffer_bytes, int wake_fd);
  void drop() {
    dropped_.store(dropped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  // The worker's cache line.
  alignas(64) std::atomic<uint64_t> head_{0};  // bytes ever written (records and padding)
  uint64_t cached_tail_ = 0;                   // the last tail_ the worker read
  std::atomic<uint64_t> dropped_{0};           // only the worker writes it
  std::string scratch_;                        // log() formats here
  // The writer's cache line.
  alignas(64) std::atomic<uint64_t> tail_{0};  // bytes ever consumed
  std::atomic<bool> wake_sent_{false};         // set by the worker, cleared by the writer
  // Read-only after construction.
  alignas(64) std::unique_ptr<char[]> buf_;
  size_t cap_;  // a multiple of 8
  int wake_fd_;
};

// One per process: owns the writer thread, the destinations and a producer per worker.
class AccessLogWriter {
 public:
  struct Options {
    // Each worker's ring: the memory bound per worker (rounded down to a multiple of 8). A line
    // takes its length rounded up to 8, plus 8.
    size_t worker_buffer_bytes = 1 << 20;
    std::chrono::milliseconds flush_interval{100};  // the longest a handed-over line waits
    size_t stage_bytes = 256 << 10;  // per destination: the write batch; what a full pipe may hold
    // How long the destructor keeps trying a pipe or socket destination that accepts nothing
    // before giving up its lines (counted as dropped). Regular files are always written out.
    std::chrono::milliseconds shutdown_grace{2000};
    // Tests only: runs on the writer thread before each pass (e.g. blocks to stall the writer).
    std::function<void()> before_pass;
  };
  static constexpr size_t kMaxDestinations = 256;  // distinct paths over the process's life

  AccessLogWriter(size_t workers, Options options);
  explicit AccessLogWriter(size_t workers) : AccessLogWriter(workers, Options{}) {}
  // Writes out every line handed over before it (workers must have stopped logging), then stops
  // the thread and closes the files.
  ~AccessLogWriter();
  AccessLogWriter(const AccessLogWriter&) = delete;
  AccessLogWriter& operator=(const AccessLogWriter&) = delete;

  // Control thread, at load and reload: the id of the destination for a file path or "stdout".
  // A file is opened on every call (O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC|O_NONBLOCK|O_NOCTTY,
  // 0640; O_NONBLOCK makes a FIFO nobody reads an error instead of a hung reload), so a reload
  // also reopens the files it keeps: the writer switches to the new descriptor on its next pass,
  // the id stays. Returns -1 with `error` set ("open /x/y: Permission denied") so the config can
  // be refused whole; that call changes nothing (earlier successful calls stay: their files exist
  // and their ids stay valid, unused).
  int destination(std::string_view path_or_stdout, std::string& error);
  // Optional, after a reload is in place: destinations not in `in_use` are retired. They stay open
  // (requests begun under the old config still log there) until the next reopen(), which closes
  // them instead of reopening them; lines for them after that are dropped. destination() for the
  // path brings one back. Without retain(), every destination stays open and is reopened.
  void retain(std::span<const int> in_use);
  // SIGUSR1 (logrotate): the writer thread reopens every file destination at the start of its
  // next pass; lines not written by then go to the new file (not to one logrotate may be
  // compressing). A file that cannot be reopened keeps the old descriptor (and a warning). Not
  // async-signal-safe: call it from the thread that takes signals. "stdout" (fd 1) is never
  // closed nor reopened.
  void reopen();

  // The producer of worker `worker` (< workers): the hot path, see AccessLogProducer.
  AccessLogProducer& producer(size_t worker) { return *producers_[worker]; }
  bool submit(size_t worker, int destination, std::string_view line) {
    return producer(worker).submit(destination, line);
  }

  uint64_t dropped() const;  // lines dropped, by workers and by the writer
  uint64_t written() const { return written_.load(std::memory_order_relaxed); }

  // Tests only: blocks until every line handed over before the call is written or dropped (and a
  // reopen() asked before it is done). Waits as long as a pipe takes nothing.
  void flush_for_tests();

 private:
  struct Destination;

  void run();
  bool pass(bool stopping);
  void drain(AccessLogProducer& p);
  void route(int id, std::string_view line);
  void install(Destination& d, int fd);
  void reopen_all();
  void write_out(Destination& d, bool block);
  void give_up(Destination& d, std::string_view why);
  bool staged_empty() const;
  void wait(std::chrono::milliseconds timeout);
  void wake() const;
  void warn_drops();

  Options options_;
  int wake_fd_ = -1;  // eventfd: workers, reopen(), destination(), flush and stop wake the writer
  std::vector<std::unique_ptr<AccessLogProducer>> producers_;

  // Destinations: created by the control thread under ctl_mu_, published through count_;
  // each one's descriptor and staging buffer belong to the writer thread.
  std::mutex ctl_mu_;
  std::map<std::string, int, std::less<>> ids_;
  std::unique_ptr<std::unique_ptr<Destination>[]> dests_;
  std::atomic<size_t> count_{0};
  size_t seen_count_ = 0;  // writer: count_ as last read

  std::atomic<bool> reopen_{false};
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> written_{0};
  std::atomic<uint64_t> writer_dropped_{0};
  uint64_t warned_dropped_ = 0;  // writer: the workers' drops at the last warning
  std::chrono::steady_clock::time_point warned_at_{};

  std::mutex flush_mu_;
  std::condition_variable flush_cv_;
  std::atomic<uint64_t> flush_asked_{0};
  uint64_t flush_done_ = 0;  // under flush_mu_

  std::thread thread_;
};

}  // namespace weir::proxy
