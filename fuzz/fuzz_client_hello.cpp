// Fuzzes the ClientHello reader two ways:
//  - the input as the first bytes of a connection: every prefix (the reader is called with all
//    received so far) must be NeedMore or the whole input's verdict, with the same name, ALPN
//    and error; a Done hello, cut out of its records and framed again in records of other
//    sizes, must read the same;
//  - the input as a ClientHello body: wrapped in a handshake header and framed in one record
//    and in records of pseudo-random sizes, both must read the same.
// Names returned must be lowercase DNS names, and nothing may read outside the input (each call
// gets an exact-size copy).
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "net/client_hello.hpp"

using namespace weir::net;
using weir::fuzz::Buffer;
using weir::fuzz::Rng;

namespace {

constexpr size_t kBig = size_t{1} << 22;  // max_bytes when re-framing, so the framing fits

HelloStatus read_copy(std::string_view in, ClientHelloInfo& info, size_t max_bytes) {
  const Buffer exact(in);
  return read_client_hello(exact.view(), info, max_bytes);
}

bool same(const ClientHelloInfo& a, const ClientHelloInfo& b) {
  return a.sni == b.sni && a.alpn == b.alpn && a.error == b.error;
}

void check_info(HelloStatus status, const ClientHelloInfo& info) {
  FUZZ_CHECK((status == HelloStatus::Invalid) == !info.error.empty());
  if (status != HelloStatus::Done) FUZZ_CHECK(info.sni.empty() && info.alpn.empty());
  FUZZ_CHECK(info.sni.size() <= 253);
  for (char c : info.sni)
    FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.');
  if (!info.sni.empty()) {
    FUZZ_CHECK(info.sni.front() != '.' && info.sni.back() != '.');
    FUZZ_CHECK(info.sni.find("..") == std::string::npos);
  }
  FUZZ_CHECK(info.alpn.size() <= kMaxAlpnKept);
  for (const std::string& p : info.alpn)
    FUZZ_CHECK(!p.empty() && p.size() <= 255);
}

std::string be16(size_t v) {
  return {static_cast<char>(v >> 8 & 0xFF), static_cast<char>(v & 0xFF)};
}

// Handshake bytes into records of 1..`max_piece` bytes (rng), or 16384 when max_piece is 0.
std::string frame(std::string_view message, size_t max_piece, Rng rng) {
  std::string out;
  while (!message.empty()) {
    size_t n = max_piece == 0 ? 16384 : 1 + rng.next() % max_piece;
    if (n > message.size()) n = message.size();
    out += "\x16\x03\x01";
    out += be16(n);
    out.append(message.substr(0, n));
    message.remove_prefix(n);
  }
  return out;
}

// The handshake message a Done stream carried, taken out of its records.
std::string unframe(std::string_view in) {
  std::string out;
  size_t need = 0;
  while (in.size() >= 5) {
    const size_t len = size_t{uint8_t(in[3])} << 8 | uint8_t(in[4]);
    FUZZ_CHECK(len > 0 && len <= 16384 && in.size() >= 5);
    const std::string_view payload = in.substr(5, len);
    out.append(payload);
    if (need == 0 && out.size() >= 4)
      need = 4 + (size_t{uint8_t(out[1])} << 16 | size_t{uint8_t(out[2])} << 8 | uint8_t(out[3]));
    if (need != 0 && out.size() >= need) {
      out.resize(need);
      return out;
    }
    in.remove_prefix(5 + payload.size());
  }
  FUZZ_CHECK(false);  // Done, yet the records do not hold the message
  return out;
}

void check_stream(std::string_view input) {
  ClientHelloInfo whole;
  const HelloStatus status = read_copy(input, whole, kClientHelloMaxBytes);
  check_info(status, whole);
  if (!input.empty() && static_cast<uint8_t>(input[0]) != 22)
    FUZZ_CHECK(status == HelloStatus::NotTls);

  // Prefixes: the first ones, then cuts. The shortest Done prefix is where the hello ends.
  size_t done_at = input.size() + 1;
  auto prefix = [&](size_t n) {
    ClientHelloInfo part;
    const HelloStatus s = read_copy(input.substr(0, n), part, kClientHelloMaxBytes);
    if (s == HelloStatus::NeedMore) {
      FUZZ_CHECK(part.sni.empty() && part.error.empty());
      return;
    }
    FUZZ_CHECK(s == status && same(part, whole));
    if (s == HelloStatus::Done && n < done_at) done_at = n;
  };
  const size_t all = input.size() < 128 ? input.size() : 128;
  for (size_t n = 0; n <= all; ++n)
    prefix(n);
  Rng rng{0x9e3779b97f4a7c15ull ^ input.size()};
  for (int i = 0; i < 24 && input.size() > all; ++i)
    prefix(all + rng.next() % (input.size() - all + 1));

  if (status != HelloStatus::Done) return;
  // Framed differently, the same hello reads the same.
  const std::string message = unframe(input);
  for (size_t piece : {size_t{0}, size_t{1}, size_t{7}, size_t{300}}) {
    ClientHelloInfo again;
    FUZZ_CHECK(read_copy(frame(message, piece, rng), again, kBig) == HelloStatus::Done);
    FUZZ_CHECK(same(again, whole));
  }
}

void check_body(std::string_view body) {
  if (body.size() > 0xFFFFFF) return;
  std::string message = "\x01";
  message.push_back(static_cast<char>(body.size() >> 16));
  message.push_back(static_cast<char>(body.size() >> 8 & 0xFF));
  message.push_back(static_cast<char>(body.size() & 0xFF));
  message.append(body);
  ClientHelloInfo one, many;
  const HelloStatus a = read_copy(frame(message, 0, Rng{1}), one, kBig);
  const HelloStatus b =
      read_copy(frame(message, 1 + body.size() % 97, Rng{body.size() + 3}), many, kBig);
  check_info(a, one);
  FUZZ_CHECK(a == HelloStatus::Done || a == HelloStatus::Invalid);
  FUZZ_CHECK(a == b && same(one, many));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_stream(input);
  check_body(input);
  return 0;
}
