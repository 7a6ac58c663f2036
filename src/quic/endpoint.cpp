#include "quic/endpoint.hpp"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "config/config.hpp"
#include "core/log.hpp"
#include "net/socket.hpp"
#include "proxy/admission.hpp"
#include "proxy/worker.hpp"
#include "quic/h3_connection.hpp"
#include "quic/quic_tls.hpp"

namespace weir::quic {
namespace {

constexpr size_t kBatch = 16;                 // datagrams per recvmmsg
constexpr size_t kMaxReadsPerEvent = 64;      // then other work gets a turn
constexpr uint32_t kMaxPosted = 4096;         // datagrams queued from other workers
constexpr double kStatelessPerSecond = 1000;  // stateless resets and version negotiations
constexpr double kStatelessBurst = 2000;
constexpr ngtcp2_duration kRetryTokenLife = 10 * NGTCP2_SECONDS;
constexpr ngtcp2_duration kRegularTokenLife = 3600 * NGTCP2_SECONDS;

std::string cid_key(const uint8_t* data, size_t len) {
  return std::string(reinterpret_cast<const char*>(data), len);
}

}  // namespace

Endpoint::Endpoint(proxy::Worker& w, int fd, size_t slot, std::string address,
                   std::shared_ptr<EndpointGroup> group)
    : w_(w),
      fd_(fd),
      slot_(slot),
      address_(std::move(address)),
      group_(std::move(group)),
      rx_(kBatch),
      tx_(1500) {
  stateless_tokens_ = kStatelessBurst;
  socklen_t len = sizeof local_.storage;
  if (fd_ >= 0 && ::getsockname(fd_, reinterpret_cast<sockaddr*>(&local_.storage), &len) == 0)
    local_.len = len;
}

Endpoint::~Endpoint() {
  close_all();
  conns_.clear();
  stop();
}

void Endpoint::start() {
  stateless_last_ = w_.reactor().now();
  w_.reactor().add(fd_, this, EPOLLIN | EPOLLET);
  read_all();
}

void Endpoint::stop() {
  if (fd_ < 0) return;
  w_.reactor().remove(fd_);
  net::close_fd(fd_);
  fd_ = -1;
}

std::shared_ptr<TlsContext> Endpoint::tls() const {
  const auto& view = *w_.view();
  return view.snap->listeners[view.slot_listener[slot_]].quic_tls;
}

void Endpoint::on_event(uint32_t) {
  read_all();
}

void Endpoint::read_all() {
  if (fd_ < 0) return;
  mmsghdr msgs[kBatch];
  iovec iov[kBatch];
  sockaddr_storage from[kBatch];
  alignas(cmsghdr) char control[kBatch][128];
  for (size_t round = 0; round < kMaxReadsPerEvent; ++round) {
    for (size_t i = 0; i < kBatch; ++i) {
      iov[i] = {rx_[i].data(), rx_[i].size()};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof from[i];
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_control = control[i];
      msgs[i].msg_hdr.msg_controllen = sizeof control[i];
    }
    int n = ::recvmmsg(fd_, msgs, kBatch, 0, nullptr);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        log::warn("HTTP/3 on {}: recvmmsg: {}", address_, strerror(errno));
      return;
    }
    w_.reactor().refresh_now();
    for (int i = 0; i < n; ++i) {
      const msghdr& h = msgs[i].msg_hdr;
      if (h.msg_flags & MSG_TRUNC) {
        ++w_.stats().quic_dropped;
        continue;
      }
      PathAddrs path;
      std::memcpy(&path.remote.storage, &from[i], h.msg_namelen);
      path.remote.len = h.msg_namelen;
      // The local address: the one the client sent to (a wildcard listener answers from it).
      path.local = local_;
      for (cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
          in_pktinfo pi;
          std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
          reinterpret_cast<sockaddr_in*>(&path.local.storage)->sin_addr = pi.ipi_addr;
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
          in6_pktinfo pi;
          std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
          reinterpret_cast<sockaddr_in6*>(&path.local.storage)->sin6_addr = pi.ipi6_addr;
        }
      }
      on_datagram(rx_[i].data(), msgs[i].msg_len, path, 0);
    }
    if (static_cast<size_t>(n) < kBatch) return;
  }
  // Still more: after the other ready work.
  w_.reactor().yield([this] { read_all(); });
}

bool Endpoint::post(std::string datagram, PathAddrs path, uint8_t ecn) {
  if (posted_.fetch_add(1, std::memory_order_relaxed) >= kMaxPosted) {
    posted_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  w_.reactor().post([this, d = std::move(datagram), path, ecn] {
    posted_.fetch_sub(1, std::memory_order_relaxed);
    on_datagram(reinterpret_cast<const uint8_t*>(d.data()), d.size(), path, ecn);
  });
  return true;
}

void Endpoint::on_datagram(const uint8_t* data, size_t len, const PathAddrs& path, uint8_t ecn) {
  if (len == 0) {  // an empty datagram: ngtcp2 asserts (aborts) on it
    ++w_.stats().quic_dropped;
    return;
  }
  ngtcp2_version_cid vc;
  int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, kCidLen);
  if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
    if (len >= NGTCP2_MAX_UDP_PAYLOAD_SIZE)
      send_version_negotiation(vc, path);
    else
      ++w_.stats().quic_dropped;
    return;
  }
  if (rv != 0) {
    ++w_.stats().quic_dropped;
    return;
  }
  auto it = cids_.find(cid_key(vc.dcid, vc.dcidlen));
  if (it != cids_.end()) {
    it->second->on_packet(path, data, len, ecn);
    return;
  }
  const bool long_header = (data[0] & 0x80) != 0;
  const bool initial = long_header && ((data[0] & 0x30) == 0);  // v1 Initial
  if (!initial && vc.dcidlen == kCidLen && vc.dcid[0] != w_.index() &&
      vc.dcid[0] < group_->deliver.size() && group_->deliver[vc.dcid[0]]) {
    // Another worker's connection (the client's address changed): hand it over.
    if (group_->deliver[vc.dcid[0]](std::string(reinterpret_cast<const char*>(data), len), path,
                                    ecn))
      ++w_.stats().quic_forwarded;
    else
      ++w_.stats().quic_dropped;
    return;
  }
  if (!long_header) {
    send_stateless_reset(vc, len, path);
    return;
  }
  ngtcp2_pkt_hd hd;
  if (ngtcp2_accept(&hd, data, len) != 0) {
    ++w_.stats().quic_dropped;  // not a first packet (a lost connection's Handshake, 0-RTT)
    return;
  }
  accept_initial(data, len, path, hd, ecn);
}

void Endpoint::accept_initial(const uint8_t* data, size_t len, const PathAddrs& path,
                              const ngtcp2_pkt_hd& hd, uint8_t ecn) {
  if (draining_) {
    ++w_.stats().quic_dropped;
    return;
  }
  const auto& view = *w_.view();
  const model::ListenerRuntime& lr = view.snap->listeners[view.slot_listener[slot_]];
  const config::GlobalLimits& limits = view.snap->config->limits;
  bool validated = false;
  ngtcp2_cid odcid;
  const ngtcp2_cid* retry_odcid = nullptr;
  uint64_t now = quic_now();
  if (hd.token.len > 0) {
    const auto& s = group_->secret;
    if (hd.token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) {
      if (ngtcp2_crypto_verify_retry_token(&odcid, hd.token.base, hd.token.len, s.data(), s.size(),
                                           hd.version, path.remote.sa(), path.remote.len, &hd.dcid,
                                           kRetryTokenLife, now) != 0) {
        // Forged, expired or for another address: no state, no answer.
        ++w_.stats().quic_dropped;
        return;
      }
      validated = true;
      retry_odcid = &odcid;
    } else if (hd.token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR) {
      validated = ngtcp2_crypto_verify_regular_token(hd.token.base, hd.token.len, s.data(),
                                                     s.size(), path.remote.sa(), path.remote.len,
                                                     kRegularTokenLife, now) == 0;
    }
  }
  TimePoint t = w_.reactor().now();
  if (t - failed_first_at_ >= std::chrono::seconds(1)) {
    failed_first_at_ = t;
    failed_first_ = 0;
  }
  if (!validated && (limits.quic_retry_threshold == 0 ||
                     handshaking_ + failed_first_ >= limits.quic_retry_threshold)) {
    send_retry(hd, path);
    return;
  }
  proxy::ClientOrigin origin;
  origin.addr = net::PeerAddress::from(path.remote.storage);
  origin.slot = static_cast<uint32_t>(slot_);
  if (view.sends_proxy_protocol) origin.extra().local = net::PeerAddress::from(path.local.storage);
  if (proxy::admit_connection(w_, lr, origin) != proxy::Refusal::None) {
    ++w_.stats().quic_dropped;  // refused (counted by reason): no state, no answer
    return;
  }
  if (!w_.quic_connection_opening(slot_)) {
    ++w_.stats().quic_dropped;  // the listener's max_connections (TCP and QUIC together)
    return;
  }
  auto c = std::make_unique<H3Connection>(*this, path, std::move(origin));
  if (!c->init(hd, retry_odcid, validated)) {
    ++w_.stats().quic_dropped;
    w_.quic_connection_closed(slot_);
    return;
  }
  H3Connection* raw = c.get();
  conns_.emplace(raw, std::move(c));
  ++handshaking_;
  ++w_.stats().quic_open;
  if (!raw->first_packet(path, data, len, ecn)) {
    // Not a client's first flight (its header parses, its payload does not decrypt or its
    // frames are invalid): forgotten without an answer, and it counts as handshake pressure
    // for a second, so a flood of such packets soon gets Retries instead of connections.
    ++w_.stats().quic_dropped;
    ++failed_first_;
    return;
  }
  ++w_.stats().h3_connections;
}

bool Endpoint::may_answer_statelessly() {
  TimePoint now = w_.reactor().now();
  double dt = std::chrono::duration<double>(now - stateless_last_).count();
  stateless_last_ = now;
  stateless_tokens_ = std::min(kStatelessBurst, stateless_tokens_ + dt * kStatelessPerSecond);
  if (stateless_tokens_ < 1) return false;
  stateless_tokens_ -= 1;
  return true;
}

void Endpoint::send_version_negotiation(const ngtcp2_version_cid& vc, const PathAddrs& path) {
  if (!may_answer_statelessly()) {
    ++w_.stats().quic_dropped;
    return;
  }
  uint32_t versions[] = {NGTCP2_PROTO_VER_V1};
  uint8_t unused = 0;
  RAND_bytes(&unused, 1);
  auto n = ngtcp2_pkt_write_version_negotiation(tx_.data(), tx_.size(), unused, vc.scid, vc.scidlen,
                                                vc.dcid, vc.dcidlen, versions, 1);
  if (n <= 0) return;
  ++w_.stats().quic_version_negotiations;
  send(path, tx_.data(), static_cast<size_t>(n));
}

void Endpoint::send_retry(const ngtcp2_pkt_hd& hd, const PathAddrs& path) {
  ngtcp2_cid scid;
  new_cid(scid);
  uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN];
  const auto& s = group_->secret;
  auto tokenlen =
      ngtcp2_crypto_generate_retry_token(token, s.data(), s.size(), hd.version, path.remote.sa(),
                                         path.remote.len, &scid, &hd.dcid, quic_now());
  if (tokenlen < 0) return;
  auto n = ngtcp2_crypto_write_retry(tx_.data(), tx_.size(), hd.version, &hd.scid, &scid, &hd.dcid,
                                     token, static_cast<size_t>(tokenlen));
  if (n <= 0) return;
  ++w_.stats().quic_retries;
  send(path, tx_.data(), static_cast<size_t>(n));
}

// RFC 9000 §10.3: smaller than what triggered it (so two endpoints cannot loop), at least
// 21 bytes + the token, unpredictable, and rate-limited.
void Endpoint::send_stateless_reset(const ngtcp2_version_cid& vc, size_t len,
                                    const PathAddrs& path) {
  if (len < 43 || vc.dcidlen == 0 || !may_answer_statelessly()) {
    ++w_.stats().quic_dropped;
    return;
  }
  ngtcp2_cid cid;
  ngtcp2_cid_init(&cid, vc.dcid, vc.dcidlen);
  uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN];
  const auto& s = group_->secret;
  if (ngtcp2_crypto_generate_stateless_reset_token(token, s.data(), s.size(), &cid) != 0) return;
  size_t total = std::min<size_t>(len - 1, 64);
  uint8_t rand[64];
  size_t randlen = total - 1 - NGTCP2_STATELESS_RESET_TOKENLEN;
  RAND_bytes(rand, static_cast<int>(randlen));
  auto n = ngtcp2_pkt_write_stateless_reset(tx_.data(), tx_.size(), token, rand, randlen);
  if (n <= 0) return;
  ++w_.stats().quic_stateless_resets;
  send(path, tx_.data(), static_cast<size_t>(n));
}

bool Endpoint::send_segments(const PathAddrs& path, const uint8_t* data, size_t len,
                             size_t segment) {
  if (fd_ < 0) return false;
  if (len > segment && !gso_) {
    bool ok = true;
    for (size_t at = 0; at < len; at += segment)
      ok = send_segments(path, data + at, std::min(segment, len - at), segment) && ok;
    return ok;
  }
  iovec iov{const_cast<uint8_t*>(data), len};
  msghdr h{};
  h.msg_name = const_cast<sockaddr*>(path.remote.sa());
  h.msg_namelen = path.remote.len;
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  alignas(
      cmsghdr) char control[CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(uint16_t))] = {};
  h.msg_control = control;
  h.msg_controllen = sizeof control;
  size_t used = 0;
  cmsghdr* c = CMSG_FIRSTHDR(&h);
  // From the address the client sent to.
  if (path.local.family() == AF_INET) {
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
    in_pktinfo pi{};
    pi.ipi_spec_dst = reinterpret_cast<const sockaddr_in*>(&path.local.storage)->sin_addr;
    std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
    used += CMSG_SPACE(sizeof(in_pktinfo));
    c = CMSG_NXTHDR(&h, c);
  } else if (path.local.family() == AF_INET6) {
    c->cmsg_level = IPPROTO_IPV6;
    c->cmsg_type = IPV6_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
    in6_pktinfo pi{};
    pi.ipi6_addr = reinterpret_cast<const sockaddr_in6*>(&path.local.storage)->sin6_addr;
    std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
    used += CMSG_SPACE(sizeof(in6_pktinfo));
    c = CMSG_NXTHDR(&h, c);
  }
  if (len > segment) {
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t seg = static_cast<uint16_t>(segment);
    std::memcpy(CMSG_DATA(c), &seg, sizeof seg);
    used += CMSG_SPACE(sizeof(uint16_t));
  }
  h.msg_controllen = used;
  if (used == 0) h.msg_control = nullptr;
  for (;;) {
    ssize_t n = ::sendmsg(fd_, &h, 0);
    if (n >= 0) return true;
    if (errno == EINTR) continue;
    if (len > segment && (errno == EIO || errno == EINVAL || errno == EOPNOTSUPP)) {
      // No GSO on this path (the device cannot segment): one packet per call from now on.
      log::info("HTTP/3 on {}: UDP GSO not available ({}); sending packet by packet", address_,
                strerror(errno));
      gso_ = false;
      return send_segments(path, data, len, segment);
    }
    // A full socket buffer loses the packets: QUIC's loss recovery sends them again, slower.
    ++w_.stats().quic_send_errors;
    return false;
  }
}

void Endpoint::new_cid(ngtcp2_cid& cid) {
  cid.datalen = kCidLen;
  RAND_bytes(cid.data, kCidLen);
  cid.data[0] = static_cast<uint8_t>(w_.index());
}

void Endpoint::add_cid(const ngtcp2_cid& cid, H3Connection* c) {
  std::string key = cid_key(cid.data, cid.datalen);
  auto [it, inserted] = cids_.emplace(key, c);
  if (!inserted) return;  // a client DCID that collides: the first owner keeps it
  c->cid_keys().push_back(std::move(key));
}

void Endpoint::remove_cid(const ngtcp2_cid& cid) {
  auto it = cids_.find(cid_key(cid.data, cid.datalen));
  if (it == cids_.end()) return;
  auto& keys = it->second->cid_keys();
  keys.erase(std::remove(keys.begin(), keys.end(), it->first), keys.end());
  cids_.erase(it);
}

void Endpoint::handshake_done(H3Connection*) {
  if (handshaking_ > 0) --handshaking_;
}

void Endpoint::retire(H3Connection* c) {
  for (const std::string& key : c->cid_keys())
    cids_.erase(key);
  c->cid_keys().clear();
  auto it = conns_.find(c);
  if (it == conns_.end()) return;
  if (!c->handshake_completed() && handshaking_ > 0) --handshaking_;
  --w_.stats().quic_open;
  // Freed after the current batch: a callback of its own may be on the stack.
  std::shared_ptr<H3Connection> owned(it->second.release());
  conns_.erase(it);
  w_.reactor().defer([owned] {});
  w_.quic_connection_closed(slot_);
}

void Endpoint::begin_drain() {
  draining_ = true;
  for (auto& [c, owned] : conns_)
    c->begin_drain();
}

void Endpoint::on_new_config() {
  for (auto& [c, owned] : conns_)
    c->begin_drain();
}

void Endpoint::close_all() {
  while (!conns_.empty())
    conns_.begin()->first->close_now();
}

}  // namespace weir::quic
