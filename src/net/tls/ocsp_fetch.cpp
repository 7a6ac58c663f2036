// OCSP stapling: fetching a response from the certificate's responder over plain HTTP
// (non-blocking, with a deadline and a cancel fd), and the fetcher thread that keeps every
// watched certificate's response fresh. Checking a response: ocsp.cpp.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "core/log.hpp"
#include "net/address.hpp"
#include "net/tls/ocsp.hpp"
#include "net/tls/ocsp_internal.hpp"

namespace weir::net::tls {
namespace {

using detail::BioPtr;
using std::chrono::milliseconds;
using namespace ocsp_detail;  // NOLINT(google-build-using-namespace)

// --- HTTP ----------------------------------------------------------------------------------

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

using SteadyClock = std::chrono::steady_clock;

// Waits for `events` on fd until the deadline or the cancel fd. 1 ready, 0 timed out, -1
// cancelled (or a poll error, with `error` set).
int wait_fd(int fd, short events, SteadyClock::time_point deadline, int cancel_fd,
            std::string& error) {
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now()).count();
    if (left <= 0) return 0;
    pollfd fds[2] = {{fd, events, 0}, {cancel_fd, POLLIN, 0}};
    int rc = ::poll(fds, cancel_fd >= 0 ? 2 : 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (rc < 0) {
      if (errno == EINTR) continue;
      error = std::string("poll: ") + std::strerror(errno);
      return -1;
    }
    if (cancel_fd >= 0 && (fds[1].revents & POLLIN)) {
      error = "cancelled (stopping)";
      return -1;
    }
    if (fds[0].revents) return 1;
  }
}

// A TCP connection to addr, connected by the deadline; -1 with `error` set otherwise.
int connect_to(const SocketAddress& addr, SteadyClock::time_point deadline, int cancel_fd,
               std::string& error) {
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  Fd guard(fd);
  if (::connect(fd, addr.sa(), addr.len) != 0 && errno != EINPROGRESS) {
    error = "cannot connect to " + addr.to_string() + ": " + std::strerror(errno);
    return -1;
  }
  int ready = wait_fd(fd, POLLOUT, deadline, cancel_fd, error);
  if (ready == 0) error = "cannot connect to " + addr.to_string() + ": timed out";
  if (ready <= 0) return -1;
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    error = "cannot connect to " + addr.to_string() + ": " + std::strerror(err);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return guard.release();
}

}  // namespace

// --- fetching ------------------------------------------------------------------------------

OcspResponsePtr fetch_ocsp_response(const OcspTarget& target, const std::string& url,
                                    milliseconds timeout, int cancel_fd, std::string& error) {
  auto deadline = SteadyClock::now() + timeout;
  if (!target.leaf || !target.issuer) {
    error = "no issuer certificate to ask about";
    return nullptr;
  }
  int use_ssl = 0, port_num = 0;
  char *host_raw = nullptr, *port_raw = nullptr, *path_raw = nullptr, *query_raw = nullptr;
  if (OSSL_HTTP_parse_url(url.c_str(), &use_ssl, nullptr, &host_raw, &port_raw, &port_num,
                          &path_raw, &query_raw, nullptr) != 1) {
    ERR_clear_error();
    error = "invalid responder URL " + url;
    return nullptr;
  }
  OsslString host(host_raw), port_text(port_raw), path(path_raw), query(query_raw);
  if (use_ssl) {
    error = "the responder URL " + url + " is https: only http responders are supported";
    return nullptr;
  }
  std::string target_path = path ? path.get() : "/";
  if (target_path.empty()) target_path = "/";
  if (query && *query) target_path += std::string("?") + query.get();
  std::string host_name = host ? host.get() : "";
  std::string host_header =
      host_name.find(':') != std::string::npos ? "[" + host_name + "]" : host_name;
  if (port_num != 80) host_header += ":" + std::to_string(port_num);

  // The request: one certificate, identified by SHA-1 hashes (what every responder knows).
  RequestPtr req(OCSP_REQUEST_new());
  OCSP_CERTID* id = OCSP_cert_to_id(nullptr, target.leaf.get(), target.issuer.get());
  if (!req || !id || !OCSP_request_add0_id(req.get(), id)) {
    OCSP_CERTID_free(id);
    error = "cannot make an OCSP request: " + detail::openssl_reason();
    return nullptr;
  }

  std::string resolve_error;
  auto addr = resolve(host_name, static_cast<uint16_t>(port_num), resolve_error);
  if (!addr) {
    error = "cannot resolve " + host_name + ": " + resolve_error;
    return nullptr;
  }
  Fd sock(connect_to(*addr, deadline, cancel_fd, error));
  if (sock.get() < 0) return nullptr;

  BioPtr bio(BIO_new_socket(sock.get(), BIO_NOCLOSE));
  HttpCtxPtr rctx(bio ? OSSL_HTTP_REQ_CTX_new(bio.get(), bio.get(), 0) : nullptr);
  if (!rctx ||
      OSSL_HTTP_REQ_CTX_set_request_line(rctx.get(), 1, nullptr, nullptr, target_path.c_str()) !=
          1 ||
      OSSL_HTTP_REQ_CTX_add1_header(rctx.get(), "Host", host_header.c_str()) != 1 ||
      OSSL_HTTP_REQ_CTX_set_expected(rctx.get(), nullptr, 1, 0, 0) != 1 ||
      OSSL_HTTP_REQ_CTX_set1_req(rctx.get(), "application/ocsp-request",
                                 ASN1_ITEM_rptr(OCSP_REQUEST),
                                 reinterpret_cast<const ASN1_VALUE*>(req.get())) != 1) {
    error = "cannot make the HTTP request: " + detail::openssl_reason();
    return nullptr;
  }
  OSSL_HTTP_REQ_CTX_set_max_response_length(rctx.get(), kMaxResponse);
  ResponsePtr resp;
  for (;;) {
    ASN1_VALUE* value = nullptr;
    int rc = OSSL_HTTP_REQ_CTX_nbio_d2i(rctx.get(), &value, ASN1_ITEM_rptr(OCSP_RESPONSE));
    if (rc == 1) {
      resp.reset(reinterpret_cast<OCSP_RESPONSE*>(value));
      break;
    }
    if (rc == 0) {
      error = "HTTP exchange with " + url + " failed: " + detail::openssl_reason(true);
      return nullptr;
    }
    short events = BIO_should_write(bio.get()) ? POLLOUT : POLLIN;
    int ready = wait_fd(sock.get(), events, deadline, cancel_fd, error);
    if (ready == 0) {
      error = "no answer from " + url + " within " + std::to_string(timeout.count()) + " ms";
      return nullptr;
    }
    if (ready < 0) return nullptr;
  }
  ERR_clear_error();
  if (!resp) {
    error = "no OCSP response from " + url;
    return nullptr;
  }
  unsigned char* der = nullptr;
  int len = i2d_OCSP_RESPONSE(resp.get(), &der);
  if (len <= 0) {
    error = "cannot encode the response: " + detail::openssl_reason();
    return nullptr;
  }
  std::string bytes(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  std::string why;
  OcspResponsePtr out = check_ocsp_response(bytes, target, std::time(nullptr), why);
  if (!out) error = "the response from " + url + " " + why;
  return out;
}

// --- the fetcher ----------------------------------------------------------------------------

OcspFetcher::OcspFetcher(Options opts) : opts_(opts) {
  cancel_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

OcspFetcher::~OcspFetcher() {
  stop();
  if (cancel_fd_ >= 0) ::close(cancel_fd_);
}

OcspFetcher& OcspFetcher::global() {
  static OcspFetcher fetcher;
  return fetcher;
}

std::shared_ptr<OcspSlot> OcspFetcher::watch(OcspTarget target, const std::string& url) {
  std::string key =
      fingerprint(target.leaf.get()) + " " + fingerprint(target.issuer.get()) + " " + url;
  std::lock_guard lock(mu_);
  auto it = jobs_.find(key);
  if (it != jobs_.end()) {
    if (auto slot = it->second.slot.lock()) return slot;
  }
  auto slot = std::make_shared<OcspSlot>();
  Job job;
  job.slot = slot;
  job.target = std::make_shared<const OcspTarget>(std::move(target));
  job.url = url;
  job.due = Clock::now();
  jobs_[key] = std::move(job);
  changed_ = true;
  cv_.notify_all();
  spawn_locked();
  return slot;
}

void OcspFetcher::start() {
  std::lock_guard lock(mu_);
  started_ = true;
  spawn_locked();
}

void OcspFetcher::spawn_locked() {
  if (started_ && !stopping_ && !thread_.joinable() && !jobs_.empty())
    thread_ = std::thread([this] { run(); });
}

void OcspFetcher::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (cancel_fd_ >= 0) {
    uint64_t one = 1;
    ssize_t n = ::write(cancel_fd_, &one, sizeof one);
    (void)n;
  }
  if (thread_.joinable()) thread_.join();
}

void OcspFetcher::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    for (auto it = jobs_.begin(); it != jobs_.end();)
      it = it->second.slot.expired() ? jobs_.erase(it) : std::next(it);
    auto next = jobs_.end();
    for (auto it = jobs_.begin(); it != jobs_.end(); ++it) {
      if (next == jobs_.end() || it->second.due < next->second.due) next = it;
    }
    changed_ = false;
    auto woken = [this] { return stopping_ || changed_; };
    if (next == jobs_.end()) {
      cv_.wait(lock, woken);
      continue;
    }
    if (next->second.due > Clock::now()) {
      cv_.wait_until(lock, next->second.due, woken);
      continue;
    }
    std::string key = next->first;
    std::shared_ptr<const OcspTarget> target = next->second.target;
    std::string url = next->second.url;
    lock.unlock();
    std::string error;
    OcspResponsePtr r = fetch_ocsp_response(*target, url, opts_.timeout, cancel_fd_, error);
    lock.lock();
    if (stopping_) break;
    auto it = jobs_.find(key);
    if (it == jobs_.end()) continue;
    Job& job = it->second;
    std::shared_ptr<OcspSlot> slot = job.slot.lock();
    if (!slot) continue;
    time_t now = std::time(nullptr);
    if (r) {
      slot->set(r);
      job.backoff = milliseconds(0);
      milliseconds wait = opts_.max_refresh;
      if (r->next_update != 0) {
        // Half the remaining validity: a failed refresh has the other half to be retried.
        wait = std::min(wait, milliseconds((r->next_update - now) * 1000 / 2));
        wait = std::max(wait, opts_.min_retry);
      }
      job.due = Clock::now() + wait;
      log::info(
          "OCSP: certificate {}: response fetched from {}: {}, valid until {}; next refresh in {} "
          "s",
          target->name, url, ocsp_status_name(r->status),
          r->next_update ? ocsp_time(r->next_update) : std::string("its next refresh"),
          std::chrono::duration_cast<std::chrono::seconds>(wait).count());
      if (r->status == V_OCSP_CERTSTATUS_REVOKED)
        log::error("OCSP: certificate {} is REVOKED (since {})", target->name,
                   ocsp_time(r->revoked_at));
      continue;
    }
    job.backoff =
        job.backoff.count() == 0 ? opts_.min_retry : std::min(job.backoff * 2, opts_.max_retry);
    job.due = Clock::now() + job.backoff;
    std::string serving = "no response stapled";
    if (OcspResponsePtr current = slot->get()) {
      if (current->next_update == 0) {
        serving = "still stapling the last response";
      } else if (current->fresh(now)) {
        serving = "still stapling the response valid until " + ocsp_time(current->next_update);
        // Try again no later than when that one goes stale, to say so when it does.
        auto stale_at = Clock::now() + std::chrono::seconds(current->next_update - now);
        job.due = std::min(job.due, stale_at);
      } else {
        slot->set(nullptr);
        serving =
            "the response expired on " + ocsp_time(current->next_update) + ": stapling stopped";
      }
    }
    auto retry_ms = std::chrono::duration_cast<milliseconds>(job.due - Clock::now()).count();
    log::warn("OCSP: certificate {}: {}; retrying in {:.1f} s ({})", target->name, error,
              static_cast<double>(std::max<long long>(retry_ms, 0)) / 1000, serving);
  }
}

}  // namespace weir::net::tls
