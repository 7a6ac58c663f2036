// OCSP stapling: checking responses, fetching them over plain HTTP, the fetcher thread.
#include "net/tls/ocsp.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/http.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "core/log.hpp"
#include "net/address.hpp"

namespace weir::net::tls {
namespace {

using detail::BioPtr;
using detail::X509Ptr;
using std::chrono::milliseconds;

constexpr time_t kClockSkew = 300;          // a thisUpdate this far ahead is still fine
constexpr size_t kMaxResponse = 64 * 1024;  // an OCSP response is a few KiB at most
constexpr size_t kMaxFile = 1024 * 1024;    // the same for a file, with room to spare

struct OcspResponseFree {
  void operator()(OCSP_RESPONSE* r) const { OCSP_RESPONSE_free(r); }
};
struct BasicRespFree {
  void operator()(OCSP_BASICRESP* r) const { OCSP_BASICRESP_free(r); }
};
struct CertIdFree {
  void operator()(OCSP_CERTID* c) const { OCSP_CERTID_free(c); }
};
struct RequestFree {
  void operator()(OCSP_REQUEST* r) const { OCSP_REQUEST_free(r); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StackFree {  // the stack only: its certificates belong to someone else
  void operator()(STACK_OF(X509) * s) const { sk_X509_free(s); }
};
struct HttpCtxFree {
  void operator()(OSSL_HTTP_REQ_CTX* c) const { OSSL_HTTP_REQ_CTX_free(c); }
};
struct OpensslFree {
  void operator()(char* p) const { OPENSSL_free(p); }
};
using ResponsePtr = std::unique_ptr<OCSP_RESPONSE, OcspResponseFree>;
using BasicPtr = std::unique_ptr<OCSP_BASICRESP, BasicRespFree>;
using CertIdPtr = std::unique_ptr<OCSP_CERTID, CertIdFree>;
using RequestPtr = std::unique_ptr<OCSP_REQUEST, RequestFree>;
using StorePtr = std::unique_ptr<X509_STORE, StoreFree>;
using StackPtr = std::unique_ptr<STACK_OF(X509), StackFree>;
using HttpCtxPtr = std::unique_ptr<OSSL_HTTP_REQ_CTX, HttpCtxFree>;
using OsslString = std::unique_ptr<char, OpensslFree>;

X509Ptr up_ref(X509* x) {
  if (x) X509_up_ref(x);
  return X509Ptr(x);
}

bool to_time(const ASN1_GENERALIZEDTIME* t, time_t& out) {
  std::tm tm{};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return false;
  out = timegm(&tm);
  return true;
}

std::string serial_hex(const ASN1_INTEGER* serial) {
  BIGNUM* bn = serial ? ASN1_INTEGER_to_BN(serial, nullptr) : nullptr;
  char* hex = bn ? BN_bn2hex(bn) : nullptr;
  std::string out = hex ? hex : "?";
  OPENSSL_free(hex);
  BN_free(bn);
  return out;
}

std::string hex(const unsigned char* p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

std::string fingerprint(X509* x) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!x || X509_digest(x, EVP_sha256(), md, &n) != 1) return "-";
  return hex(md, n);
}

// The first certificate of `chain` that issued `leaf`.
X509Ptr find_issuer(X509* leaf, const std::vector<X509Ptr>& chain) {
  for (const X509Ptr& c : chain) {
    if (X509_check_issued(c.get(), leaf) == X509_V_OK) return up_ref(c.get());
  }
  return nullptr;
}

// The reason of the oldest error of the queue with its data ("received error (code=404,…)").
// Clears the queue.
std::string reason_and_data() {
  const char* data = nullptr;
  int flags = 0;
  unsigned long e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags);
  std::string out;
  if (e == 0) return "unknown error";
  if (ERR_SYSTEM_ERROR(e)) {
    out = std::strerror(static_cast<int>(ERR_GET_REASON(e)));
  } else if (const char* r = ERR_reason_error_string(e)) {
    out = r;
  } else {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out = buf;
  }
  if (data && (flags & ERR_TXT_STRING) && *data) out += std::string(" (") + data + ")";
  ERR_clear_error();
  return out;
}

// The single response of `bs` about `target`, matched by the hash algorithm each one uses.
OCSP_SINGLERESP* find_single(OCSP_BASICRESP* bs, const OcspTarget& target, std::string& other) {
  int n = OCSP_resp_count(bs);
  for (int i = 0; i < n; ++i) {
    OCSP_SINGLERESP* single = OCSP_resp_get0(bs, i);
    const OCSP_CERTID* cid = OCSP_SINGLERESP_get0_id(single);
    ASN1_OBJECT* md_oid = nullptr;
    ASN1_INTEGER* serial = nullptr;
    if (!cid ||
        OCSP_id_get0_info(nullptr, &md_oid, nullptr, &serial, const_cast<OCSP_CERTID*>(cid)) != 1)
      continue;
    if (other.empty()) other = serial_hex(serial);
    const EVP_MD* md = EVP_get_digestbyobj(md_oid);
    if (!md) continue;
    CertIdPtr mine(OCSP_cert_to_id(md, target.leaf.get(), target.issuer.get()));
    if (mine && OCSP_id_cmp(mine.get(), cid) == 0) return single;
  }
  ERR_clear_error();
  return nullptr;
}

bool read_whole_file(const std::string& path, std::string& data, std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    error = std::strerror(errno);
    return false;
  }
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    data.append(buf, n);
    if (data.size() > kMaxFile) break;
  }
  bool ok = !std::ferror(f);
  if (!ok) error = std::strerror(errno);
  std::fclose(f);
  return ok;
}

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

std::string_view ocsp_status_name(int status) {
  switch (status) {
    case V_OCSP_CERTSTATUS_GOOD:
      return "good";
    case V_OCSP_CERTSTATUS_REVOKED:
      return "revoked";
    default:
      return "unknown";
  }
}

std::string ocsp_time(time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

// --- OcspTarget ------------------------------------------------------------------------------

bool OcspTarget::from_ctx(SSL_CTX* ctx, const std::string& name, OcspTarget& out,
                          std::string& error) {
  X509* leaf = SSL_CTX_get0_certificate(ctx);
  if (!leaf) {
    error = "no certificate in " + name;
    return false;
  }
  out = OcspTarget{};
  out.name = name;
  out.leaf = up_ref(leaf);
  STACK_OF(X509)* chain = nullptr;
  if (SSL_CTX_get0_chain_certs(ctx, &chain) == 1 && chain) {
    for (int i = 0; i < sk_X509_num(chain); ++i)
      out.chain.push_back(up_ref(sk_X509_value(chain, i)));
  }
  out.issuer = find_issuer(leaf, out.chain);
  return true;
}

bool OcspTarget::from_file(const std::string& path, OcspTarget& out, std::string& error) {
  std::string data;
  if (!read_whole_file(path, data, error)) {
    error = "cannot read certificate " + path + ": " + error;
    return false;
  }
  out = OcspTarget{};
  out.name = path;
  BioPtr bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  while (bio) {
    X509Ptr x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!x) break;
    if (!out.leaf)
      out.leaf = std::move(x);
    else
      out.chain.push_back(std::move(x));
  }
  ERR_clear_error();
  if (!out.leaf) {
    error = "no PEM certificate in " + path;
    return false;
  }
  out.issuer = find_issuer(out.leaf.get(), out.chain);
  return true;
}

bool OcspTarget::responder_url(std::string& url, std::string& error) const {
  STACK_OF(OPENSSL_STRING)* urls = leaf ? X509_get1_ocsp(leaf.get()) : nullptr;
  std::string first;
  url.clear();
  for (int i = 0; urls && i < sk_OPENSSL_STRING_num(urls); ++i) {
    std::string u = sk_OPENSSL_STRING_value(urls, i);
    if (first.empty()) first = u;
    if (url.empty() && u.size() > 7 && strncasecmp(u.c_str(), "http://", 7) == 0) url = u;
  }
  X509_email_free(urls);
  if (!url.empty()) return true;
  if (first.empty()) {
    error = "certificate " + name +
            " names no OCSP responder (Authority Information Access) to fetch from";
  } else {
    error = "the OCSP responder of certificate " + name + " is " + first +
            ": only http responders are supported";
  }
  return false;
}

// --- checking ------------------------------------------------------------------------------

OcspResponsePtr check_ocsp_response(std::string_view der, const OcspTarget& target, time_t now,
                                    std::string& error) {
  if (der.empty()) {
    error = "is empty";
    return nullptr;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* end = p + der.size();
  ResponsePtr resp(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
  ERR_clear_error();
  if (!resp) {
    error = "is not a DER OCSP response";
    return nullptr;
  }
  if (p != end) {
    error =
        "is not a DER OCSP response (" + std::to_string(end - p) + " bytes follow the response)";
    return nullptr;
  }
  int rstatus = OCSP_response_status(resp.get());
  if (rstatus != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    error = std::string("is not a successful OCSP response (the responder said \"") +
            OCSP_response_status_str(rstatus) + "\")";
    return nullptr;
  }
  BasicPtr bs(OCSP_response_get1_basic(resp.get()));
  if (!bs) {
    ERR_clear_error();
    error = "holds no basic OCSP response";
    return nullptr;
  }
  if (!target.leaf) {
    error = "cannot be checked: no certificate";
    return nullptr;
  }
  if (!target.issuer) {
    error = "cannot be checked: the issuer of " + target.name +
            " is not in that file (append the issuer's certificate after it)";
    return nullptr;
  }
  std::string other;
  OCSP_SINGLERESP* single = find_single(bs.get(), target, other);
  if (!single) {
    error = "is for another certificate (serial " + (other.empty() ? "?" : other) + "), not for " +
            target.name + " (serial " + serial_hex(X509_get0_serialNumber(target.leaf.get())) + ")";
    return nullptr;
  }
  // Signed by the issuer itself or by a responder certificate it issued for OCSP signing: the
  // issuer is the trust anchor (an intermediate CA is enough), the PEM's chain and the response's
  // own certificates help build the signer's chain.
  StorePtr store(X509_STORE_new());
  StackPtr certs(sk_X509_new_null());
  if (!store || !certs || X509_STORE_add_cert(store.get(), target.issuer.get()) != 1) {
    error = "cannot be checked: " + detail::openssl_reason();
    return nullptr;
  }
  X509_VERIFY_PARAM* param = X509_STORE_get0_param(store.get());
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  X509_VERIFY_PARAM_set_time(param, now);
  for (const X509Ptr& c : target.chain)
    sk_X509_push(certs.get(), c.get());
  if (OCSP_basic_verify(bs.get(), certs.get(), store.get(), 0) <= 0) {
    error = "is not signed by the issuer of " + target.name + " or a responder it delegated to (" +
            detail::openssl_reason() + ")";
    return nullptr;
  }
  int reason = 0;
  ASN1_GENERALIZEDTIME *revoked = nullptr, *this_upd = nullptr, *next_upd = nullptr;
  auto out = std::make_shared<OcspResponse>();
  out->status = OCSP_single_get0_status(single, &reason, &revoked, &this_upd, &next_upd);
  if (out->status < 0 || !to_time(this_upd, out->this_update)) {
    ERR_clear_error();
    error = "has an invalid status or thisUpdate";
    return nullptr;
  }
  if (next_upd && !to_time(next_upd, out->next_update)) {
    error = "has an invalid nextUpdate";
    return nullptr;
  }
  if (revoked) to_time(revoked, out->revoked_at);
  if (out->this_update > now + kClockSkew) {
    error = "is not valid before " + ocsp_time(out->this_update) + " (its thisUpdate)";
    return nullptr;
  }
  if (out->next_update != 0 && out->next_update <= now) {
    error = "expired on " + ocsp_time(out->next_update) +
            " (its nextUpdate): a stale response is never stapled";
    return nullptr;
  }
  if (out->next_update != 0 && out->next_update < out->this_update) {
    error = "has a nextUpdate before its thisUpdate";
    return nullptr;
  }
  out->der.assign(der.data(), der.size());
  return out;
}

OcspResponsePtr load_ocsp_file(const std::string& path, const OcspTarget& target, time_t now,
                               std::string& error) {
  std::string data, why;
  if (!read_whole_file(path, data, why)) {
    error = "cannot read OCSP response " + path + ": " + why;
    return nullptr;
  }
  OcspResponsePtr out = check_ocsp_response(data, target, now, why);
  if (!out) error = "OCSP response " + path + " " + why;
  return out;
}

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
      error = "HTTP exchange with " + url + " failed: " + reason_and_data();
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
