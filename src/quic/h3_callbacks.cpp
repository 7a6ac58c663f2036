// The ngtcp2 and nghttp3 callbacks of an H3Connection: what the libraries tell us, handed to
// the connection and its streams.
#include "quic/h3_callbacks.hpp"

#include <ngtcp2/ngtcp2_crypto.h>
#include <openssl/rand.h>

#include <cstring>

#include "core/log.hpp"
#include "quic/h3_connection.hpp"

namespace weir::quic {
namespace {

H3Connection& C(void* p) {
  return *static_cast<H3Connection*>(p);
}

}  // namespace

// ---- ngtcp2 callbacks
struct Callbacks {
  static void rand(uint8_t* dest, size_t len, const ngtcp2_rand_ctx*) {
    if (RAND_bytes(dest, static_cast<int>(len)) != 1) std::memset(dest, 0, len);
  }

  static int get_new_connection_id(ngtcp2_conn*, ngtcp2_cid* cid, uint8_t* token, size_t cidlen,
                                   void* user) {
    H3Connection& c = C(user);
    (void)cidlen;  // ours are always kCidLen
    c.ep_.new_cid(*cid);
    if (ngtcp2_crypto_generate_stateless_reset_token(token, c.ep_.secret().data(),
                                                     c.ep_.secret().size(), cid) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
    c.ep_.add_cid(*cid, &c);
    return 0;
  }

  static int remove_connection_id(ngtcp2_conn*, const ngtcp2_cid* cid, void* user) {
    C(user).ep_.remove_cid(*cid);
    return 0;
  }

  static int handshake_completed(ngtcp2_conn* conn, void* user) {
    H3Connection& c = C(user);
    c.handshake_done_ = true;
    c.ep_.handshake_done(&c);
    // A token for the client's next connection: it skips the Retry round trip then.
    uint8_t token[NGTCP2_CRYPTO_MAX_REGULAR_TOKENLEN];
    const PathAddrs& p = c.path_;
    auto n =
        ngtcp2_crypto_generate_regular_token(token, c.ep_.secret().data(), c.ep_.secret().size(),
                                             p.remote.sa(), p.remote.len, quic_now());
    if (n > 0) ngtcp2_conn_submit_new_token(conn, token, static_cast<size_t>(n));
    return 0;
  }

  static int recv_stream_data(ngtcp2_conn* conn, uint32_t flags, int64_t stream_id, uint64_t,
                              const uint8_t* data, size_t datalen, void* user, void*) {
    H3Connection& c = C(user);
    if (!c.h3_ && !c.setup_h3()) return NGTCP2_ERR_CALLBACK_FAILURE;
    auto n = nghttp3_conn_read_stream(c.h3_, stream_id, data, datalen,
                                      (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0);
    if (n < 0) {
      log::debug("client {}: HTTP/3 stream {}: {}", c.client_.ip, stream_id,
                 nghttp3_strerror(static_cast<int>(n)));
      ngtcp2_connection_close_error_set_application_error(
          &c.last_error_, nghttp3_err_infer_quic_app_error_code(static_cast<int>(n)), nullptr, 0);
      return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    // Frame bytes nghttp3 consumed itself; DATA payload opens the window as exchanges read it.
    ngtcp2_conn_extend_max_stream_offset(conn, stream_id, static_cast<uint64_t>(n));
    ngtcp2_conn_extend_max_offset(conn, static_cast<uint64_t>(n));
    return 0;
  }

  static int acked_stream_data_offset(ngtcp2_conn*, int64_t stream_id, uint64_t, uint64_t datalen,
                                      void* user, void*) {
    H3Connection& c = C(user);
    if (c.h3_ && nghttp3_conn_add_ack_offset(c.h3_, stream_id, datalen) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
    return 0;
  }

  static int stream_close(ngtcp2_conn*, uint32_t flags, int64_t stream_id, uint64_t app_error_code,
                          void* user, void*) {
    H3Connection& c = C(user);
    if (!(flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET))
      app_error_code = NGHTTP3_H3_NO_ERROR;
    if (c.h3_) {
      int rv = nghttp3_conn_close_stream(c.h3_, stream_id, app_error_code);
      if (rv != 0 && rv != NGHTTP3_ERR_STREAM_NOT_FOUND) {
        ngtcp2_connection_close_error_set_application_error(
            &c.last_error_, nghttp3_err_infer_quic_app_error_code(rv), nullptr, 0);
        return NGTCP2_ERR_CALLBACK_FAILURE;
      }
    }
    return 0;
  }

  static int stream_reset(ngtcp2_conn*, int64_t stream_id, uint64_t, uint64_t, void* user, void*) {
    H3Connection& c = C(user);
    c.client_reset(stream_id);
    if (c.h3_ && nghttp3_conn_shutdown_stream_read(c.h3_, stream_id) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
    return 0;
  }

  static int stream_stop_sending(ngtcp2_conn*, int64_t stream_id, uint64_t, void* user, void*) {
    H3Connection& c = C(user);
    c.client_reset(stream_id);
    if (c.h3_ && nghttp3_conn_shutdown_stream_read(c.h3_, stream_id) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
    return 0;
  }

  static int extend_max_remote_streams_bidi(ngtcp2_conn*, uint64_t max_streams, void* user) {
    H3Connection& c = C(user);
    if (c.h3_) nghttp3_conn_set_max_client_streams_bidi(c.h3_, max_streams);
    return 0;
  }

  static int extend_max_stream_data(ngtcp2_conn*, int64_t stream_id, uint64_t, void* user, void*) {
    H3Connection& c = C(user);
    if (c.h3_ && nghttp3_conn_unblock_stream(c.h3_, stream_id) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
    return 0;
  }
};

// ---- nghttp3 callbacks
struct H3Callbacks {
  static H3Stream* S(void* stream_user) { return static_cast<H3Stream*>(stream_user); }

  static int acked_stream_data(nghttp3_conn*, int64_t, uint64_t datalen, void*, void* su) {
    if (H3Stream* s = S(su)) s->acked(datalen);
    return 0;
  }

  static int stream_close(nghttp3_conn*, int64_t stream_id, uint64_t, void* user, void* su) {
    H3Connection& c = C(user);
    if (H3Stream* s = S(su)) s->on_closed();
    // A client request stream ended: the client may open another.
    if (ngtcp2_is_bidi_stream(stream_id) && !ngtcp2_conn_is_local_stream(c.conn_, stream_id))
      ngtcp2_conn_extend_max_streams_bidi(c.conn_, 1);
    c.schedule_turn();
    return 0;
  }

  static int recv_data(nghttp3_conn*, int64_t stream_id, const uint8_t* data, size_t len,
                       void* user, void* su) {
    H3Connection& c = C(user);
    if (H3Stream* s = S(su)) {
      s->append_data(std::string_view(reinterpret_cast<const char*>(data), len));
    } else {
      c.consumed(stream_id, len);  // nobody reads it
    }
    return 0;
  }

  static int deferred_consume(nghttp3_conn*, int64_t stream_id, size_t consumed, void* user,
                              void*) {
    H3Connection& c = C(user);
    ngtcp2_conn_extend_max_stream_offset(c.conn_, stream_id, consumed);
    ngtcp2_conn_extend_max_offset(c.conn_, consumed);
    return 0;
  }

  static int begin_headers(nghttp3_conn* h3, int64_t stream_id, void* user, void*) {
    H3Connection& c = C(user);
    if (c.goaway_ || c.closing_) {
      // After GOAWAY: refused (the client retries it on a new connection).
      ngtcp2_conn_shutdown_stream(c.conn_, stream_id, NGHTTP3_H3_REQUEST_REJECTED);
      return 0;
    }
    auto s = std::make_unique<H3Stream>(c, stream_id);
    nghttp3_conn_set_stream_user_data(h3, stream_id, s.get());
    c.streams_[stream_id] = std::move(s);
    return 0;
  }

  static int recv_header(nghttp3_conn*, int64_t, int32_t, nghttp3_rcbuf* name, nghttp3_rcbuf* value,
                         uint8_t, void*, void* su) {
    if (H3Stream* s = S(su)) {
      auto n = nghttp3_rcbuf_get_buf(name);
      auto v = nghttp3_rcbuf_get_buf(value);
      s->add_field(std::string_view(reinterpret_cast<const char*>(n.base), n.len),
                   std::string_view(reinterpret_cast<const char*>(v.base), v.len));
    }
    return 0;
  }

  static int end_headers(nghttp3_conn*, int64_t, int fin, void* user, void* su) {
    if (H3Stream* s = S(su)) {
      s->end_head(fin != 0);
      s->run_exchange();
      C(user).schedule_turn();
    }
    return 0;
  }

  static int recv_trailer(nghttp3_conn*, int64_t, int32_t, nghttp3_rcbuf* name,
                          nghttp3_rcbuf* value, uint8_t, void*, void* su) {
    if (H3Stream* s = S(su)) {
      auto n = nghttp3_rcbuf_get_buf(name);
      auto v = nghttp3_rcbuf_get_buf(value);
      s->add_trailer(std::string_view(reinterpret_cast<const char*>(n.base), n.len),
                     std::string_view(reinterpret_cast<const char*>(v.base), v.len));
    }
    return 0;
  }

  static int end_stream(nghttp3_conn*, int64_t, void* user, void* su) {
    if (H3Stream* s = S(su)) {
      s->end_request();
      C(user).schedule_turn();
    }
    return 0;
  }

  static int stop_sending(nghttp3_conn*, int64_t stream_id, uint64_t code, void* user, void*) {
    ngtcp2_conn_shutdown_stream_write(C(user).conn_, stream_id, code);
    return 0;
  }

  static int reset_stream(nghttp3_conn*, int64_t stream_id, uint64_t code, void* user, void*) {
    ngtcp2_conn_shutdown_stream_write(C(user).conn_, stream_id, code);
    return 0;
  }
};

void set_callbacks(ngtcp2_callbacks& cb) {
  cb.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
  cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb.encrypt = ngtcp2_crypto_encrypt_cb;
  cb.decrypt = ngtcp2_crypto_decrypt_cb;
  cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb.update_key = ngtcp2_crypto_update_key_cb;
  cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  cb.rand = Callbacks::rand;
  cb.get_new_connection_id = Callbacks::get_new_connection_id;
  cb.remove_connection_id = Callbacks::remove_connection_id;
  cb.handshake_completed = Callbacks::handshake_completed;
  cb.recv_stream_data = Callbacks::recv_stream_data;
  cb.acked_stream_data_offset = Callbacks::acked_stream_data_offset;
  cb.stream_close = Callbacks::stream_close;
  cb.stream_reset = Callbacks::stream_reset;
  cb.stream_stop_sending = Callbacks::stream_stop_sending;
  cb.extend_max_remote_streams_bidi = Callbacks::extend_max_remote_streams_bidi;
  cb.extend_max_stream_data = Callbacks::extend_max_stream_data;
}

void set_callbacks(nghttp3_callbacks& cb) {
  cb.acked_stream_data = H3Callbacks::acked_stream_data;
  cb.stream_close = H3Callbacks::stream_close;
  cb.recv_data = H3Callbacks::recv_data;
  cb.deferred_consume = H3Callbacks::deferred_consume;
  cb.begin_headers = H3Callbacks::begin_headers;
  cb.recv_header = H3Callbacks::recv_header;
  cb.end_headers = H3Callbacks::end_headers;
  cb.recv_trailer = H3Callbacks::recv_trailer;
  cb.end_stream = H3Callbacks::end_stream;
  cb.stop_sending = H3Callbacks::stop_sending;
  cb.reset_stream = H3Callbacks::reset_stream;
}

}  // namespace weir::quic
