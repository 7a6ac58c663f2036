// The HTTP/3 (QUIC) front door: every datagram a client sends to an `http3: true` listener goes
// through quic::Endpoint::on_datagram (version negotiation, Retry and its tokens, stateless
// resets, routing by connection ID) and, for an acceptable Initial, into a new H3Connection
// (ngtcp2_conn_server_new, GnuTLS, ngtcp2_conn_read_pkt, the write loop, the closing and draining
// periods). Nothing may crash, leak or hang: at the end of each input the endpoint closes every
// connection and each one must be gone within a bounded number of reactor turns.
//
// The endpoint has no socket (fd -1): Endpoint::send() drops every packet weir would send.
// A fresh endpoint per input, so its rate limits and handshake counts start the same each time.
//
// Input: FLAGS RECORD*
//  - FLAGS: 1 = the Retry world (limits.quic_retry_threshold 0: no state before a Retry),
//    2 = drain (GOAWAY) before the end, 4|8 = the ECN bits every datagram carries.
//  - RECORD: a 2-byte big-endian header, then (header & 0x3fff) bytes (fewer if the input ends);
//    header >> 14 is the kind:
//      0: a raw datagram from client A (127.0.0.1:40000)
//      1: a raw datagram from client B (127.0.0.1:40001: a second client, or A after NAT
//         rebinding)
//      2: the bytes are the plaintext frames of an Initial packet from A, which this driver
//         protects with the v1 Initial keys of DCID 0011223344556677 (SCID 8899aabbccddeeff,
//         packet numbers 0, 1, ...) and pads to 1200 bytes: frame parsing, the TLS ClientHello
//         and errors after decryption are reached, which raw mutations (failing the AEAD) never do
//      3: the same from B with DCID 1122334455667788 (SCID 99aabbccddeeff00)
// Between datagrams the worker's reactor runs a few turns (deferred connection turns, timers).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.hpp"
#include "core/log.hpp"
#include "fuzz_util.hpp"
#include "model/snapshot.hpp"
#include "proxy/worker.hpp"
#include "quic/endpoint.hpp"

namespace {

using namespace weir;

// A self-signed P-256 pair for localhost and 127.0.0.1, valid until 2126 (test use only).
constexpr std::string_view kCert = R"(-----BEGIN CERTIFICATE-----
MIIBnDCCAUGgAwIBAgIUUBl71/OaI0A/a2MUthXAiZIl1w4wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwMTA1MDQ1MFoYDzIxMjYxMTA3
MDUwNDUwWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAARytMH6ZN05o4KlE+SDtPeHjP7Kigarra/s7V8Egj1JtxvrYMLc5Deo
5jrxkE+ozmgJO4JZGYchFqmAIKbzyJvmo28wbTAdBgNVHQ4EFgQUugWSyTmitmzc
SH22cyZnhNAJTnEwHwYDVR0jBBgwFoAUugWSyTmitmzcSH22cyZnhNAJTnEwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDSQAwRgIhAKEdIYJhNOtV52AbHId4D3nWYWHzc/9tesesX5Xi1jfyAiEA
nhIdxPhNKySER09Wi3KHjT+FAqvjmECWvUaWan5Ob28=
-----END CERTIFICATE-----
)";
constexpr std::string_view kKey = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgvUQ8waqnEJm/IZFL
AvxU0xRksdjpZXwTgS90ohBYG6qhRANCAARytMH6ZN05o4KlE+SDtPeHjP7Kigar
ra/s7V8Egj1JtxvrYMLc5Deo5jrxkE+ozmgJO4JZGYchFqmAIKbzyJvm
-----END PRIVATE KEY-----
)";

constexpr uint16_t kListenPort = 18443;
constexpr std::string_view kListenAddr = "127.0.0.1:18443";

// The certificate files, written once into a private temporary folder (removed at exit).
struct CertFiles {
  std::filesystem::path dir;
  std::string cert, key;
  CertFiles() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "weir-fuzz-quic-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    dir = tmpl;
    cert = (dir / "cert.pem").string();
    key = (dir / "key.pem").string();
    std::ofstream(cert) << kCert;
    std::ofstream(key) << kKey;
  }
};

const CertFiles& cert_files() {
  static const auto* f = [] {
    auto* files = new CertFiles();
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(cert_files().dir, ec);
    });
    return files;
  }();
  return *f;
}

std::string config_text(uint32_t retry_threshold) {
  const CertFiles& f = cert_files();
  return R"(
listeners:
  - name: h3
    listen: )" +
         std::string(kListenAddr) +
         R"(
    tls:
      certificates:
        - cert: )" +
         f.cert +
         R"(
          key: )" +
         f.key +
         R"(
    http3: true
    backend: web
backends:
  - name: web
    retries: 0
    servers:
      - address: 127.0.0.1:9
limits:
  max_header_bytes: 4KiB
  h3_max_concurrent_streams: 8
  h3_stream_window: 64KiB
  h3_connection_window: 256KiB
  quic_idle_timeout: 5s
  quic_retry_threshold: )" +
         std::to_string(retry_threshold) + "\n";
}

// A worker with a real snapshot (not started: the fuzzing thread turns its reactor).
struct World {
  model::ServerRegistry registry;
  std::unique_ptr<proxy::Worker> worker;
  std::shared_ptr<quic::EndpointGroup> group = std::make_shared<quic::EndpointGroup>();

  explicit World(uint32_t retry_threshold) {
    auto res = config::load_config_string(config_text(retry_threshold), "fuzz.yaml");
    if (!res.ok()) std::abort();
    std::vector<std::string> errors;
    auto snap = model::build_snapshot(res.config, registry, errors);
    if (!snap || !snap->listeners.at(0).quic_tls) std::abort();
    worker = std::make_unique<proxy::Worker>(
        0, snap, std::vector<proxy::ListenSocket>{},
        std::vector<std::string>{std::string(kListenAddr)},
        std::vector<std::shared_ptr<proxy::ListenerGate>>{std::make_shared<proxy::ListenerGate>()});
    // A fixed secret: the same tokens and reset tokens every run.
    for (size_t i = 0; i < group->secret.size(); ++i)
      group->secret[i] = static_cast<uint8_t>(0x5a ^ i);
  }
};

World& world(bool retry) {
  static World* normal = new World(100);  // lives for the whole process
  static World* always_retry = new World(0);
  return retry ? *always_retry : *normal;
}

net::SocketAddress ipv4(uint16_t port) {
  net::SocketAddress a;
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(port);
  std::memcpy(&a.storage, &sin, sizeof sin);
  a.len = sizeof sin;
  return a;
}

// ---- v1 Initial packet protection (RFC 9001 §5), so that kinds 2 and 3 decrypt.

using Bytes = std::vector<uint8_t>;

Bytes hmac_sha256(const Bytes& key, const Bytes& msg) {
  Bytes out(32);
  unsigned len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), msg.data(), msg.size(),
           out.data(), &len) == nullptr)
    std::abort();
  return out;
}

// HKDF-Expand-Label for outputs of at most one SHA-256 block.
Bytes expand_label(const Bytes& secret, std::string_view label, size_t len) {
  std::string full = "tls13 " + std::string(label);
  Bytes info = {0, static_cast<uint8_t>(len), static_cast<uint8_t>(full.size())};
  info.insert(info.end(), full.begin(), full.end());
  info.push_back(0);  // empty context
  info.push_back(1);  // T(1)
  Bytes t = hmac_sha256(secret, info);
  t.resize(len);
  return t;
}

struct InitialKeys {
  Bytes key, iv, hp;
};

InitialKeys client_initial_keys(const Bytes& dcid) {
  static const Bytes kSalt = {0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
                              0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a};
  Bytes initial = hmac_sha256(kSalt, dcid);  // HKDF-Extract
  Bytes client = expand_label(initial, "client in", 32);
  return {expand_label(client, "quic key", 16), expand_label(client, "quic iv", 12),
          expand_label(client, "quic hp", 16)};
}

bool aes_gcm_seal(const InitialKeys& k, const Bytes& nonce, const uint8_t* aad, size_t aadlen,
                  const Bytes& plain, uint8_t* out /* plain.size() + 16 */) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int n = 0;
  bool ok = ctx &&
            EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), nullptr, k.key.data(), nonce.data()) &&
            EVP_EncryptUpdate(ctx, nullptr, &n, aad, static_cast<int>(aadlen)) &&
            EVP_EncryptUpdate(ctx, out, &n, plain.data(), static_cast<int>(plain.size())) &&
            EVP_EncryptFinal_ex(ctx, out + n, &n) &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out + plain.size());
  EVP_CIPHER_CTX_free(ctx);
  return ok;
}

bool hp_mask(const InitialKeys& k, const uint8_t* sample, uint8_t mask[16]) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int n = 0;
  bool ok = ctx && EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), nullptr, k.hp.data(), nullptr) &&
            EVP_CIPHER_CTX_set_padding(ctx, 0) && EVP_EncryptUpdate(ctx, mask, &n, sample, 16);
  EVP_CIPHER_CTX_free(ctx);
  return ok;
}

struct Client {
  Bytes dcid, scid;
  InitialKeys keys;
  uint32_t next_pn = 0;
};

// A client Initial carrying `frames` (padded with PADDING to a 1200-byte datagram).
Bytes protect_initial(Client& c, std::string_view frames) {
  constexpr size_t kPnLen = 4;
  Bytes plain(frames.begin(), frames.end());
  Bytes pkt = {0xc0 | (kPnLen - 1), 0, 0, 0, 1};
  pkt.push_back(static_cast<uint8_t>(c.dcid.size()));
  pkt.insert(pkt.end(), c.dcid.begin(), c.dcid.end());
  pkt.push_back(static_cast<uint8_t>(c.scid.size()));
  pkt.insert(pkt.end(), c.scid.begin(), c.scid.end());
  pkt.push_back(0);  // no token
  // Header so far + 2-byte Length + pn + payload + tag >= 1200.
  size_t header = pkt.size() + 2 + kPnLen;
  if (header + plain.size() + 16 < 1200) plain.resize(1200 - header - 16, 0);
  size_t length = kPnLen + plain.size() + 16;
  pkt.push_back(static_cast<uint8_t>(0x40 | (length >> 8)));
  pkt.push_back(static_cast<uint8_t>(length));
  const size_t pn_offset = pkt.size();
  const uint32_t pn = c.next_pn++;
  for (size_t i = 0; i < kPnLen; ++i)
    pkt.push_back(static_cast<uint8_t>(pn >> (8 * (kPnLen - 1 - i))));
  Bytes nonce = c.keys.iv;
  for (size_t i = 0; i < 4; ++i)
    nonce[nonce.size() - 1 - i] ^= static_cast<uint8_t>(pn >> (8 * i));
  const size_t aadlen = pkt.size();
  pkt.resize(aadlen + plain.size() + 16);
  if (!aes_gcm_seal(c.keys, nonce, pkt.data(), aadlen, plain, pkt.data() + aadlen)) std::abort();
  uint8_t mask[16];
  if (!hp_mask(c.keys, pkt.data() + pn_offset + 4, mask)) std::abort();
  pkt[0] ^= mask[0] & 0x0f;
  for (size_t i = 0; i < kPnLen; ++i)
    pkt[pn_offset + i] ^= mask[1 + i];
  return pkt;
}

Client make_client(const Bytes& dcid, const Bytes& scid) {
  return Client{dcid, scid, client_initial_keys(dcid), 0};
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  signal(SIGPIPE, SIG_IGN);  // as weir's main does
  log::set_level(log::Level::Error);
  world(false);
  world(true);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 64 * 1024) return 0;
  const uint8_t flags = data[0];
  World& w = world(flags & 1);
  const uint8_t ecn = (flags >> 2) & 3;
  Reactor& r = w.worker->reactor();
  auto& stats = w.worker->stats();
  const int64_t open_before = stats.quic_open;

  auto ep = std::make_unique<quic::Endpoint>(*w.worker, -1, 0, std::string(kListenAddr), w.group);
  const quic::PathAddrs path_a{ipv4(kListenPort), ipv4(40000)};
  const quic::PathAddrs path_b{ipv4(kListenPort), ipv4(40001)};
  Client client_a = make_client({0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77},
                                {0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff});
  Client client_b = make_client({0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88},
                                {0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00});

  auto turns = [&](int n) {
    for (int i = 0; i < n; ++i)
      r.run_once(0);
  };

  size_t at = 1;
  int datagrams = 0;
  while (at + 2 <= size && datagrams < 64) {
    const unsigned header = (static_cast<unsigned>(data[at]) << 8) | data[at + 1];
    at += 2;
    const unsigned kind = header >> 14;
    size_t len = header & 0x3fff;
    if (len > size - at) len = size - at;
    std::string_view bytes(reinterpret_cast<const char*>(data + at), len);
    at += len;
    ++datagrams;
    Bytes datagram;
    switch (kind) {
      case 0:
      case 1:
        datagram.assign(bytes.begin(), bytes.end());
        break;
      case 2:
        datagram = protect_initial(client_a, bytes.substr(0, 4000));
        break;
      default:
        datagram = protect_initial(client_b, bytes.substr(0, 4000));
        break;
    }
    // An exact-size heap copy: ASan flags any read past the datagram.
    fuzz::Buffer copy(
        std::string_view(reinterpret_cast<const char*>(datagram.data()), datagram.size()));
    r.refresh_now();
    ep->on_datagram(reinterpret_cast<const uint8_t*>(copy.bytes.get()), copy.size,
                    (kind & 1) ? path_b : path_a, ecn);
    turns(2);
  }
  if (flags & 2) {
    ep->begin_drain();
    turns(4);
  }
  // The end: the worker stops (as Worker::run does after its reactor returned).
  ep->close_all();
  FUZZ_CHECK(ep->connections() == 0);
  r.run_pending();  // frees the retired connections
  FUZZ_CHECK(stats.quic_open == open_before);
  ep->stop();
  ep.reset();
  r.run_pending();
  return 0;
}
