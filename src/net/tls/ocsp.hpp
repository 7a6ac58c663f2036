#pragma once
// OCSP stapling (`ocsp:` of listener certificates): checking a DER response against its
// certificate, the response a certificate staples now (swapped while handshakes read it), and
// the thread that fetches responses from the certificates' responders and keeps them fresh.
//
// Threads: handshakes (workers) only read an OcspSlot; a reload (main thread) builds new
// contexts, with new slots for `file:` and the same slots for `fetch:`; the fetcher thread
// replaces what a `fetch:` slot holds. Nothing here ever blocks a worker.
#include <openssl/ssl.h>

#include <chrono>
#include <condition_variable>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "net/tls/internal.hpp"

namespace weir::net::tls {

// A checked OCSP response, as stapled.
struct OcspResponse {
  std::string der;
  int status = 0;  // V_OCSP_CERTSTATUS_GOOD, _REVOKED or _UNKNOWN
  time_t this_update = 0;
  time_t next_update = 0;  // 0: the response has none
  time_t revoked_at = 0;   // when status is revoked
  // Only a fresh response is stapled: never one past its nextUpdate.
  bool fresh(time_t now) const { return next_update == 0 || now < next_update; }
};
using OcspResponsePtr = std::shared_ptr<const OcspResponse>;

// "good", "revoked" or "unknown".
std::string_view ocsp_status_name(int status);
// "YYYY-MM-DD HH:MM:SS UTC".
std::string ocsp_time(time_t t);

// The certificate a response must be about: the leaf and its issuer, found in the chain that
// follows the leaf in the certificate's PEM file.
struct OcspTarget {
  detail::X509Ptr leaf;
  detail::X509Ptr issuer;              // null: the chain has no issuer of the leaf
  std::vector<detail::X509Ptr> chain;  // every certificate after the leaf
  std::string name;                    // the certificate file, for messages and logs

  // From a loaded context (its certificate and chain) or from the PEM file itself.
  static bool from_ctx(SSL_CTX* ctx, const std::string& name, OcspTarget& out, std::string& error);
  static bool from_file(const std::string& path, OcspTarget& out, std::string& error);
  // The leaf's first http OCSP responder URL (Authority Information Access); false with
  // `error` set when it names none ("... names no OCSP responder ...") or only https ones.
  bool responder_url(std::string& url, std::string& error) const;
};

// Parses `der` and checks it against `target` at `now`: a successful basic OCSP response,
// signed by the issuer or by a responder it delegated to (OCSP signing), with a status for
// this certificate, and current: thisUpdate at most 5 minutes ahead, nextUpdate not passed.
// Returns null with `error` set otherwise ("is not a DER OCSP response", "is for another
// certificate", "expired on ..."). A revoked or unknown status is not an error here.
OcspResponsePtr check_ocsp_response(std::string_view der, const OcspTarget& target, time_t now,
                                    std::string& error);

// Reads the DER response in `path` and checks it (check_ocsp_response). On failure returns
// null with `error` = "cannot read OCSP response PATH: ..." or "OCSP response PATH <why>".
OcspResponsePtr load_ocsp_file(const std::string& path, const OcspTarget& target, time_t now,
                               std::string& error);

// Asks `url` (plain http) for the status of `target`: a POST of an OCSP request, then
// check_ocsp_response on what comes back. Blocks up to `timeout` or until `cancel_fd` (when
// >= 0) becomes readable. For the fetcher thread (and tests), never for a worker.
OcspResponsePtr fetch_ocsp_response(const OcspTarget& target, const std::string& url,
                                    std::chrono::milliseconds timeout, int cancel_fd,
                                    std::string& error);

// The response one certificate staples now.
class OcspSlot {
 public:
  OcspResponsePtr get() const {
    std::lock_guard lock(mu_);
    return current_;
  }
  void set(OcspResponsePtr r) {
    std::lock_guard lock(mu_);
    current_ = std::move(r);
  }

 private:
  mutable std::mutex mu_;  // held for a shared_ptr copy: handshakes barely contend
  OcspResponsePtr current_;
};

// Keeps the slots of `ocsp: { fetch: true }` certificates filled, on a thread of its own:
// fetches a new certificate's response at once, refreshes it at half its remaining validity
// (at most `max_refresh` apart), retries a failure after `min_retry`, doubling up to
// `max_retry`, and empties a slot whose response passed its nextUpdate without a refresh.
// Successes are logged at info, failures at warn, both naming the certificate file.
class OcspFetcher {
 public:
  struct Options {
    std::chrono::milliseconds timeout{10000};  // one fetch: resolve, connect, send, receive
    std::chrono::milliseconds min_retry{2000};
    std::chrono::milliseconds max_retry{300000};
    std::chrono::milliseconds max_refresh{3600000};
  };

  OcspFetcher() : OcspFetcher(Options{}) {}
  explicit OcspFetcher(Options opts);
  ~OcspFetcher();  // stop()

  // The process's fetcher: ServerContext::build registers `fetch:` certificates there, and
  // the runtime starts and stops it (`weir check` never starts it: no network).
  static OcspFetcher& global();

  // The slot of `target` fetched from `url`. The same certificate (leaf, issuer, URL) gets the
  // same slot for as long as a context holds it, so a reload keeps the response fetched so far;
  // a slot nobody holds any more is forgotten.
  std::shared_ptr<OcspSlot> watch(OcspTarget target, const std::string& url);

  void start();  // the thread runs while there is something to fetch
  void stop();   // interrupts a fetch in progress and joins the thread

  OcspFetcher(const OcspFetcher&) = delete;
  OcspFetcher& operator=(const OcspFetcher&) = delete;

 private:
  using Clock = std::chrono::steady_clock;
  struct Job {
    std::weak_ptr<OcspSlot> slot;
    std::shared_ptr<const OcspTarget> target;
    std::string url;
    Clock::time_point due;
    std::chrono::milliseconds backoff{0};  // 0: the last fetch succeeded (or none yet)
  };
  void run();
  void spawn_locked();

  Options opts_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Job> jobs_;  // by leaf, issuer and URL
  bool started_ = false;
  bool stopping_ = false;
  bool changed_ = false;  // a job was added: the thread recomputes its next wake-up
  int cancel_fd_ = -1;    // eventfd: readable once stop() is called
  std::thread thread_;
};

}  // namespace weir::net::tls
