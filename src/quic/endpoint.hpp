#pragma once
// A worker's QUIC endpoint for one http3 listen address: its own UDP socket in the address's
// SO_REUSEPORT group (the kernel keeps a client's 4-tuple on one socket, so on one worker), the
// connections it serves by connection ID, and what is answered without any state: Version
// Negotiation, Retry, Stateless Reset.
//
// Connection IDs weir issues are 16 bytes, the first naming the worker: a packet that reaches
// another worker (the client's address changed: NAT rebinding, migration) is handed to the
// owner's reactor (bounded), so a connection lives on one thread.
//
// Who gets state: an Initial packet that carries a valid token (from our Retry, or a NEW_TOKEN
// of an earlier connection) or arrives while fewer than limits.quic_retry_threshold handshakes
// are in progress on this worker. Others get a Retry (one packet, no state): a flood of Initials
// from spoofed addresses costs one packet each, never a connection. Until the client's address
// is validated, ngtcp2 sends at most three times what it received (anti-amplification).
#include <netinet/in.h>
#include <ngtcp2/ngtcp2.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/reactor.hpp"
#include "net/address.hpp"

namespace weir::proxy {
class Worker;
}

namespace weir::quic {

class H3Connection;
class TlsContext;

constexpr size_t kCidLen = 16;

// ngtcp2's timestamps: the monotonic clock in nanoseconds.
inline uint64_t quic_now() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
          .count());
}
constexpr size_t kMaxDatagram = 4096;  // received: larger ones are truncated and dropped

// Where a datagram came from and went to (the local address matters on a wildcard listener).
struct PathAddrs {
  net::SocketAddress local;
  net::SocketAddress remote;
};

// Shared by the endpoints of every worker for one listen address: the secrets tokens and
// stateless reset tokens are made with, and the way to the other workers' endpoints.
struct EndpointGroup {
  std::array<uint8_t, 32> secret{};  // random per process
  // Per worker: hands a datagram to that worker's endpoint of this slot; set once all exist.
  std::vector<std::function<bool(std::string, PathAddrs, uint8_t ecn)>> deliver;
};

class Endpoint final : public EventHandler {
 public:
  Endpoint(proxy::Worker& w, int fd, size_t slot, std::string address,
           std::shared_ptr<EndpointGroup> group);
  ~Endpoint() override;

  void start();
  void on_event(uint32_t events) override;
  // One datagram, from our socket or from another worker's endpoint.
  void on_datagram(const uint8_t* data, size_t len, const PathAddrs& path, uint8_t ecn);
  // A datagram for another worker's connection (thread-safe: runs on that worker's reactor).
  // False when that worker's queue is full (the datagram is dropped).
  bool post(std::string datagram, PathAddrs path, uint8_t ecn);

  // Sends one packet (sendmsg with the local address); false if the socket did not take it.
  bool send(const PathAddrs& path, const uint8_t* data, size_t len) {
    return send_segments(path, data, len, len);
  }
  // Several packets in one syscall (UDP GSO): `len` bytes cut every `segment` bytes (the last
  // may be shorter). Without GSO in the kernel, one sendmsg per packet.
  bool send_segments(const PathAddrs& path, const uint8_t* data, size_t len, size_t segment);

  // Drain: connections get GOAWAY and finish their requests; no new connection is accepted.
  void begin_drain();
  void on_new_config();  // GOAWAY: clients reconnect to the new config
  void close_all();      // the worker stops
  void stop();           // closes the socket (after close_all)
  size_t connections() const { return conns_.size(); }
  bool draining() const { return draining_; }

  // For connections.
  proxy::Worker& worker() { return w_; }
  size_t slot() const { return slot_; }
  const std::array<uint8_t, 32>& secret() const { return group_->secret; }
  void new_cid(ngtcp2_cid& cid);
  void add_cid(const ngtcp2_cid& cid, H3Connection* c);
  void remove_cid(const ngtcp2_cid& cid);
  // The connection is over: its IDs are forgotten now, the object is freed later.
  void retire(H3Connection* c);
  void handshake_done(H3Connection* c);
  std::shared_ptr<TlsContext> tls() const;

 private:
  void read_all();
  void accept_initial(const uint8_t* data, size_t len, const PathAddrs& path,
                      const ngtcp2_pkt_hd& hd, uint8_t ecn);
  void send_version_negotiation(const ngtcp2_version_cid& vc, const PathAddrs& path);
  void send_retry(const ngtcp2_pkt_hd& hd, const PathAddrs& path);
  void send_stateless_reset(const ngtcp2_version_cid& vc, size_t len, const PathAddrs& path);
  bool may_answer_statelessly();

  proxy::Worker& w_;
  int fd_;
  size_t slot_;
  std::string address_;
  net::SocketAddress local_;  // the socket's address (its IP replaced per datagram by PKTINFO)
  std::shared_ptr<EndpointGroup> group_;
  std::unordered_map<std::string, H3Connection*> cids_;  // every CID a connection answers to
  std::unordered_map<H3Connection*, std::unique_ptr<H3Connection>> conns_;
  size_t handshaking_ = 0;   // connections whose handshake is not complete
  size_t failed_first_ = 0;  // first packets that made no connection, this second
  TimePoint failed_first_at_{};
  bool draining_ = false;
  // Stateless Resets and Version Negotiations per second, so a flood of unknown packets is never
  // answered beyond this. (A Retry is smaller than the Initial it answers: not limited.)
  double stateless_tokens_ = 0;
  TimePoint stateless_last_{};
  std::atomic<uint32_t> posted_{0};  // datagrams queued to this endpoint by other workers
  // receive batch
  std::vector<std::array<uint8_t, kMaxDatagram>> rx_;
  std::vector<uint8_t> tx_;
  bool gso_ = true;  // cleared if the kernel refuses UDP_SEGMENT
};

}  // namespace weir::quic
