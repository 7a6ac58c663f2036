// QUIC connection: setup, packets in, the write loop, timers and the connection's end. The
// ngtcp2 and nghttp3 callbacks are in h3_callbacks.cpp, a stream's request and answer in
// h3_stream.cpp.
#include "quic/h3_connection.hpp"

#include "quic/h3_callbacks.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <cstring>

#include "config/config.hpp"
#include "core/log.hpp"
#include "proxy/worker.hpp"
#include "quic/quic_tls.hpp"

namespace weir::quic {
namespace {

constexpr uint64_t kHandshakeTimeout = 10 * NGTCP2_SECONDS;
constexpr size_t kMaxPacketsPerWrite = 16;  // then other connections get a turn (pacing timer)
// Client resets of streams whose answer was not complete: a burst, then so many per second
// (HTTP/2's budget against rapid reset, CVE-2023-44487; HTTP/3 is as exposed).
constexpr double kResetBurst = 200;
constexpr double kResetRate = 100;

ngtcp2_path path_of(const PathAddrs& p) {
  ngtcp2_path path{};
  path.local.addr = const_cast<sockaddr*>(p.local.sa());
  path.local.addrlen = p.local.len;
  path.remote.addr = const_cast<sockaddr*>(p.remote.sa());
  path.remote.addrlen = p.remote.len;
  return path;
}

PathAddrs addrs_of(const ngtcp2_path& p) {
  PathAddrs a;
  std::memcpy(&a.local.storage, p.local.addr, p.local.addrlen);
  a.local.len = p.local.addrlen;
  std::memcpy(&a.remote.storage, p.remote.addr, p.remote.addrlen);
  a.remote.len = p.remote.addrlen;
  return a;
}

}  // namespace

H3Connection::H3Connection(Endpoint& ep, const PathAddrs& path, proxy::ClientOrigin origin)
    : ep_(ep), path_(path) {
  client_.ip = net::peer_ip(path.remote.storage);
  client_.origin = std::move(origin);
  client_.proto = proxy::ClientProto::Http3;
  client_.tls = true;
  client_.tls_version = 13;
  timer_.set_callback([this] { on_timer(); });
  reset_tokens_ = kResetBurst;
  reset_last_ = ep.worker().reactor().now();
  idle_timer_.set_callback([this] { begin_drain(); });
  ngtcp2_connection_close_error_default(&last_error_);
}

H3Connection::~H3Connection() {
  timer_.cancel();
  idle_timer_.cancel();
  for (auto& [id, s] : streams_)
    s->abandon();
  streams_.clear();
  if (h3_) nghttp3_conn_del(h3_);
  if (conn_) ngtcp2_conn_del(conn_);
  if (tls_) gnutls_deinit(tls_);
}

uint64_t H3Connection::ts() const {
  return quic_now();
}

bool H3Connection::init(const ngtcp2_pkt_hd& hd, const ngtcp2_cid* retry_odcid,
                        bool address_validated) {
  proxy::Worker& w = ep_.worker();
  const config::GlobalLimits& limits = w.view()->snap->config->limits;
  max_header_bytes_ = limits.max_header_bytes;
  max_headers_ = limits.max_headers;
  send_cap_ = std::max<uint64_t>(64 * 1024, limits.h3_stream_window);

  tls_ctx_ = ep_.tls();
  if (!tls_ctx_) return false;
  ref_.get_conn = [](ngtcp2_crypto_conn_ref* r) {
    return static_cast<H3Connection*>(r->user_data)->conn_;
  };
  ref_.user_data = this;
  std::string err;
  tls_ = tls_ctx_->new_session(&ref_, err);
  if (!tls_) {
    log::error("HTTP/3 on {}: {}", ep_.worker().index(), err);
    return false;
  }

  ngtcp2_callbacks cb{};
  set_callbacks(cb);

  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = ts();
  settings.max_tx_udp_payload_size = 1452;
  settings.handshake_timeout = kHandshakeTimeout;
  // No window auto-tuning beyond the configured bounds.
  settings.max_window = limits.h3_connection_window;
  settings.max_stream_window = limits.h3_stream_window;
  settings.cc_algo = NGTCP2_CC_ALGO_CUBIC;
  if (hd.token.len > 0 && address_validated) {
    settings.token = hd.token;  // the client proved its address (Retry or NEW_TOKEN)
  }

  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_stream_data_bidi_local = limits.h3_stream_window;
  params.initial_max_stream_data_bidi_remote = limits.h3_stream_window;
  params.initial_max_stream_data_uni = 64 * 1024;  // control and QPACK streams
  params.initial_max_data = limits.h3_connection_window;
  params.initial_max_streams_bidi = limits.h3_max_concurrent_streams;
  params.initial_max_streams_uni = 3;
  params.max_idle_timeout =
      static_cast<uint64_t>(limits.quic_idle_timeout.count()) * NGTCP2_MILLISECONDS;
  params.active_connection_id_limit = 7;
  params.stateless_reset_token_present = 1;
  if (retry_odcid) {
    params.original_dcid = *retry_odcid;
    params.retry_scid = hd.dcid;
    params.retry_scid_present = 1;
  } else {
    params.original_dcid = hd.dcid;
  }

  ngtcp2_cid scid;
  ep_.new_cid(scid);
  if (ngtcp2_crypto_generate_stateless_reset_token(
          params.stateless_reset_token, ep_.secret().data(), ep_.secret().size(), &scid) != 0)
    return false;
  ngtcp2_path path = path_of(path_);
  int rv = ngtcp2_conn_server_new(&conn_, &hd.scid, &scid, &path, hd.version, &cb, &settings,
                                  &params, nullptr, this);
  if (rv != 0) {
    log::debug("client {}: QUIC: cannot create the connection: {}", client_.ip,
               ngtcp2_strerror(rv));
    return false;
  }
  ngtcp2_conn_set_tls_native_handle(conn_, tls_);
  ep_.add_cid(scid, this);
  ep_.add_cid(hd.dcid, this);  // the client's Initial DCID, until the handshake moves on
  return true;
}

bool H3Connection::setup_h3() {
  if (ngtcp2_conn_get_streams_uni_left(conn_) < 3) return false;
  nghttp3_callbacks cb{};
  set_callbacks(cb);
  nghttp3_settings settings;
  nghttp3_settings_default(&settings);
  settings.max_field_section_size = max_header_bytes_;
  settings.qpack_max_dtable_capacity = 4096;
  settings.qpack_blocked_streams = 100;
  if (nghttp3_conn_server_new(&h3_, &cb, &settings, nghttp3_mem_default(), this) != 0) return false;
  const ngtcp2_transport_params* params = ngtcp2_conn_get_local_transport_params(conn_);
  nghttp3_conn_set_max_client_streams_bidi(h3_, params->initial_max_streams_bidi);
  int64_t ctrl, enc, dec;
  if (ngtcp2_conn_open_uni_stream(conn_, &ctrl, nullptr) != 0 ||
      nghttp3_conn_bind_control_stream(h3_, ctrl) != 0 ||
      ngtcp2_conn_open_uni_stream(conn_, &enc, nullptr) != 0 ||
      ngtcp2_conn_open_uni_stream(conn_, &dec, nullptr) != 0 ||
      nghttp3_conn_bind_qpack_streams(h3_, enc, dec) != 0)
    return false;
  return true;
}

bool H3Connection::first_packet(const PathAddrs& path, const uint8_t* data, size_t len,
                                uint8_t ecn) {
  ngtcp2_path p = path_of(path);
  ngtcp2_pkt_info pi{};
  pi.ecn = ecn;
  int rv = ngtcp2_conn_read_pkt(conn_, &p, &pi, data, len, ts());
  if (rv == 0) {
    schedule_turn();
    return true;
  }
  if (rv == NGTCP2_ERR_CRYPTO) {
    handle_error(rv);  // a real client whose TLS handshake failed: it hears why
    return true;
  }
  retire();
  return false;
}

void H3Connection::on_packet(const PathAddrs& path, const uint8_t* data, size_t len, uint8_t ecn) {
  if (retired_) return;
  if (closing_) {
    // Closing period: each packet gets our CONNECTION_CLOSE again (at most one per 100 ms);
    // draining period (close_pkt_ empty): silence.
    TimePoint now = ep_.worker().reactor().now();
    if (!close_pkt_.empty() && now - last_close_sent_ >= Millis(100)) {
      last_close_sent_ = now;
      ep_.send(path, close_pkt_.data(), close_pkt_.size());
    }
    return;
  }
  ngtcp2_path p = path_of(path);
  ngtcp2_pkt_info pi{};
  pi.ecn = ecn;
  int rv = ngtcp2_conn_read_pkt(conn_, &p, &pi, data, len, ts());
  if (rv != 0) {
    handle_error(rv);
    return;
  }
  if (close_after_read_) {
    enter_closing();
    return;
  }
  path_ = path;  // the latest path the client used (ngtcp2 validates migrations)
  schedule_turn();
}

void H3Connection::handle_error(int liberr) {
  switch (liberr) {
    case NGTCP2_ERR_DRAINING:
      enter_draining();
      return;
    case NGTCP2_ERR_DROP_CONN:
      retire();
      return;
    case NGTCP2_ERR_CRYPTO:
      if (!last_error_.error_code)
        ngtcp2_connection_close_error_set_transport_error_tls_alert(
            &last_error_, ngtcp2_conn_get_tls_alert(conn_), nullptr, 0);
      break;
    case NGTCP2_ERR_CALLBACK_FAILURE:
      if (last_error_.error_code == 0)
        ngtcp2_connection_close_error_set_transport_error_liberr(&last_error_, liberr, nullptr, 0);
      break;
    default:
      ngtcp2_connection_close_error_set_transport_error_liberr(&last_error_, liberr, nullptr, 0);
      break;
  }
  log::debug("client {}: QUIC connection error: {}", client_.ip, ngtcp2_strerror(liberr));
  enter_closing();
}

void H3Connection::enter_closing() {
  if (closing_ || retired_) return;
  closing_ = true;
  for (auto& [id, s] : streams_)
    s->abandon();
  if (!ngtcp2_conn_is_in_closing_period(conn_) && !ngtcp2_conn_is_in_draining_period(conn_)) {
    close_pkt_.resize(NGTCP2_MAX_UDP_PAYLOAD_SIZE);
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi{};
    auto n = ngtcp2_conn_write_connection_close(conn_, &ps.path, &pi, close_pkt_.data(),
                                                close_pkt_.size(), &last_error_, ts());
    if (n > 0) {
      close_pkt_.resize(static_cast<size_t>(n));
      last_close_sent_ = ep_.worker().reactor().now();
      ep_.send(path_, close_pkt_.data(), close_pkt_.size());
    } else {
      close_pkt_.clear();
    }
  }
  if (close_pkt_.empty() || !handshake_done_) {
    retire();  // nothing to repeat, or nobody who would care (no handshake yet)
    return;
  }
  auto pto = ngtcp2_conn_get_pto(conn_);
  timer_.arm(ep_.worker().reactor().timers(),
             ep_.worker().reactor().now() + std::chrono::nanoseconds(3 * pto));
}

void H3Connection::enter_draining() {
  if (closing_ || retired_) return;
  closing_ = true;
  close_pkt_.clear();
  for (auto& [id, s] : streams_)
    s->abandon();
  auto pto = ngtcp2_conn_get_pto(conn_);
  timer_.arm(ep_.worker().reactor().timers(),
             ep_.worker().reactor().now() + std::chrono::nanoseconds(3 * pto));
}

void H3Connection::retire() {
  if (retired_) return;
  retired_ = true;
  timer_.cancel();
  idle_timer_.cancel();
  for (auto& [id, s] : streams_)
    s->abandon();
  ep_.retire(this);
}

void H3Connection::close_now() {
  if (retired_) return;
  if (!closing_) {
    ngtcp2_connection_close_error_set_application_error(&last_error_, NGHTTP3_H3_NO_ERROR, nullptr,
                                                        0);
    enter_closing();
  }
  retire();
}

void H3Connection::begin_drain() {
  if (goaway_ || closing_ || retired_) return;
  goaway_ = true;
  if (h3_) {
    nghttp3_conn_submit_shutdown_notice(h3_);
    nghttp3_conn_shutdown(h3_);
  }
  schedule_turn();
}

void H3Connection::client_reset(int64_t id) {
  auto it = streams_.find(id);
  if (it == streams_.end() || it->second->answered() || closing_ || close_after_read_) return;
  TimePoint now = ep_.worker().reactor().now();
  double dt = std::chrono::duration<double>(now - reset_last_).count();
  reset_last_ = now;
  reset_tokens_ = std::min(kResetBurst, reset_tokens_ + dt * kResetRate);
  if (reset_tokens_ >= 1) {
    reset_tokens_ -= 1;
    return;
  }
  log::warn("client {}: HTTP/3: streams reset faster than they finish (rapid reset); closing",
            client_.ip);
  ++ep_.worker().stats().h3_abuse;
  ngtcp2_connection_close_error_set_application_error(&last_error_, NGHTTP3_H3_EXCESSIVE_LOAD,
                                                      nullptr, 0);
  // Not from inside ngtcp2's callback: once this packet is read.
  close_after_read_ = true;
}

void H3Connection::consumed(int64_t stream_id, size_t n) {
  if (closing_ || retired_ || n == 0) return;
  ngtcp2_conn_extend_max_stream_offset(conn_, stream_id, n);
  ngtcp2_conn_extend_max_offset(conn_, n);
  schedule_turn();
}

void H3Connection::stream_closed(int64_t) {
  schedule_turn();
}

void H3Connection::schedule_turn() {
  if (turn_queued_ || retired_) return;
  turn_queued_ = true;
  ep_.worker().reactor().defer([this] {
    turn_queued_ = false;
    turn();
  });
}

void H3Connection::turn() {
  if (retired_ || closing_) return;
  in_turn_ = true;
  for (int round = 0; round < 8; ++round) {
    bool moved = false;
    for (auto& [id, s] : streams_)
      moved |= s->run_exchange();
    collect_closed();
    if (!moved) break;
  }
  in_turn_ = false;
  if (closing_ || retired_) return;
  write();
  if (closing_ || retired_) return;
  if (goaway_ && streams_.empty() && handshake_done_) {
    // Drained: every request answered.
    ngtcp2_connection_close_error_set_application_error(&last_error_, NGHTTP3_H3_NO_ERROR, nullptr,
                                                        0);
    enter_closing();
    return;
  }
  arm_timer();
  if (!streams_.empty()) {
    idle_timer_.cancel();
  } else if (!idle_timer_.armed() && !goaway_) {
    proxy::Worker& w = ep_.worker();
    auto idle = w.listener_runtime(client_.slot()).cfg->timeouts.idle;
    idle_timer_.arm(w.reactor().timers(), w.reactor().now() + idle);
  }
}

void H3Connection::collect_closed() {
  for (auto it = streams_.begin(); it != streams_.end();) {
    H3Stream& s = *it->second;
    if (!s.closed()) {
      ++it;
      continue;
    }
    s.abandon();
    if (s.unconsumed() > 0) ngtcp2_conn_extend_max_offset(conn_, s.unconsumed());
    if (h3_) nghttp3_conn_set_stream_user_data(h3_, it->first, nullptr);
    it = streams_.erase(it);
  }
}

// Packets of one pass go out together: consecutive packets on the same path, all of the first
// one's size but the last, make one GSO send.
bool H3Connection::write() {
  constexpr size_t kPkt = 1500;
  uint8_t batch[kMaxPacketsPerWrite * kPkt];
  size_t used = 0, segment = 0;
  bool batch_closed = false;  // its last packet was short: the next one starts a new batch
  PathAddrs batch_path;
  auto flush = [&] {
    if (used > 0) ep_.send_segments(batch_path, batch, used, segment);
    used = segment = 0;
    batch_closed = false;
  };
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  uint64_t now = ts();
  size_t max_pkts = std::min<size_t>(
      kMaxPacketsPerWrite, std::max<size_t>(1, ngtcp2_conn_get_send_quantum(conn_) / kPkt + 1));
  size_t sent = 0;
  for (;;) {
    int64_t stream_id = -1;
    int fin = 0;
    nghttp3_vec vec[16];
    nghttp3_ssize sveccnt = 0;
    if (h3_ && ngtcp2_conn_get_max_data_left(conn_)) {
      sveccnt = nghttp3_conn_writev_stream(h3_, &stream_id, &fin, vec, 16);
      if (sveccnt < 0) {
        ngtcp2_connection_close_error_set_application_error(
            &last_error_, nghttp3_err_infer_quic_app_error_code(static_cast<int>(sveccnt)), nullptr,
            0);
        enter_closing();
        return false;
      }
    }
    ngtcp2_ssize ndatalen = -1;
    uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    if (fin) flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    uint8_t* buf = batch + used;
    auto n = ngtcp2_conn_writev_stream(conn_, &ps.path, &pi, buf, kPkt, &ndatalen, flags, stream_id,
                                       reinterpret_cast<const ngtcp2_vec*>(vec),
                                       static_cast<size_t>(sveccnt), now);
    if (n < 0) {
      switch (n) {
        case NGTCP2_ERR_STREAM_DATA_BLOCKED:
          nghttp3_conn_block_stream(h3_, stream_id);
          continue;
        case NGTCP2_ERR_STREAM_SHUT_WR:
          nghttp3_conn_shutdown_stream_write(h3_, stream_id);
          continue;
        case NGTCP2_ERR_WRITE_MORE:
          if (nghttp3_conn_add_write_offset(h3_, stream_id, static_cast<size_t>(ndatalen)) != 0) {
            enter_closing();
            return false;
          }
          continue;
        default:
          ngtcp2_connection_close_error_set_transport_error_liberr(&last_error_,
                                                                   static_cast<int>(n), nullptr, 0);
          enter_closing();
          return false;
      }
    }
    if (ndatalen >= 0 && stream_id >= 0 &&
        nghttp3_conn_add_write_offset(h3_, stream_id, static_cast<size_t>(ndatalen)) != 0) {
      enter_closing();
      return false;
    }
    if (n == 0) break;
    size_t len = static_cast<size_t>(n);
    PathAddrs pa = addrs_of(ps.path);
    bool same_path =
        used > 0 && pa.remote.len == batch_path.remote.len &&
        std::memcmp(&pa.remote.storage, &batch_path.remote.storage, pa.remote.len) == 0 &&
        pa.local.len == batch_path.local.len &&
        std::memcmp(&pa.local.storage, &batch_path.local.storage, pa.local.len) == 0;
    if (used > 0 && (!same_path || batch_closed || len > segment)) {
      // It cannot join the batch: the batch goes, and this packet starts the next one.
      size_t at = used;
      flush();
      std::memmove(batch, batch + at, len);
    }
    if (used == 0) {
      batch_path = pa;
      segment = len;
    } else if (len < segment) {
      batch_closed = true;
    }
    used += len;
    if (++sent >= max_pkts) break;
  }
  flush();
  ngtcp2_conn_update_pkt_tx_time(conn_, now);
  return true;
}

void H3Connection::arm_timer() {
  ngtcp2_tstamp expiry = ngtcp2_conn_get_expiry(conn_);
  if (expiry == UINT64_MAX) {
    timer_.cancel();
    return;
  }
  uint64_t now = ts();
  auto delay = std::chrono::nanoseconds(expiry > now ? expiry - now : 0);
  timer_.arm(ep_.worker().reactor().timers(),
             ep_.worker().reactor().now() + std::chrono::duration_cast<Clock::duration>(delay));
}

void H3Connection::on_timer() {
  if (retired_) return;
  if (closing_) {
    retire();  // the closing or draining period is over
    return;
  }
  int rv = ngtcp2_conn_handle_expiry(conn_, ts());
  if (rv != 0) {
    if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
      if (rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT)
        log::debug("client {}: QUIC handshake timed out", client_.ip);
      retire();  // silently (RFC 9000 §10.1)
      return;
    }
    handle_error(rv);
    return;
  }
  write();
  if (!closing_ && !retired_) arm_timer();
}

}  // namespace weir::quic
