#include "net/client_hello.hpp"

#include <algorithm>
#include <bitset>
#include <cstdint>
#include <string>

namespace weir::net {
namespace {

constexpr uint8_t kRecordHandshake = 22;
constexpr size_t kRecordHeader = 5;
constexpr size_t kMaxRecordPayload = size_t{1} << 14;  // RFC 8446 5.1: TLSPlaintext.length
constexpr size_t kHandshakeHeader = 4;                 // msg_type, uint24 length
constexpr uint8_t kClientHello = 1;
constexpr uint16_t kExtServerName = 0, kExtAlpn = 16;
constexpr uint8_t kNameTypeHostName = 0;

uint8_t byte_at(std::string_view s, size_t i) {
  return static_cast<uint8_t>(s[i]);
}

// ---------------------------------------------------------------------------------------------
// Records: find the ClientHello's bytes in the record layer.

struct Fragments {
  HelloStatus status = HelloStatus::NeedMore;
  std::string_view error;
  size_t hello_length = 0;  // the handshake message, header included
  bool single = false;      // wholly inside the first record: parse it in place
};

Fragments fail(std::string_view why) {
  return {HelloStatus::Invalid, why};
}

// Walks the records and decides whether they carry a whole ClientHello. Every byte index is
// checked against max_bytes before the input's size, so whether an index is "too far" never
// depends on how much has arrived: a prefix of the input gets NeedMore or the same verdict.
Fragments locate(std::string_view in, size_t max_bytes) {
  Fragments f;
  uint8_t head[kHandshakeHeader];
  size_t head_got = 0;
  size_t have = 0;  // handshake bytes gathered so far
  size_t need = 0;  // the whole message's length once its header is in
  for (size_t pos = 0, index = 0;; ++index) {
    // The record header: type, version, length.
    for (size_t i = 0; i < kRecordHeader; ++i) {
      if (pos + i >= max_bytes) return fail("client hello too large");
      if (pos + i >= in.size()) return f;
      const uint8_t b = byte_at(in, pos + i);
      if (i == 0 && b != kRecordHandshake) {
        if (index == 0) return {HelloStatus::NotTls};
        return fail("unexpected record type");  // RFC 8446 5.1: no interleaving
      }
      if (i == 1 && b != 3) {
        if (index == 0) return {HelloStatus::NotTls};
        return fail("bad record version");
      }
    }
    const size_t length = size_t{byte_at(in, pos + 3)} << 8 | byte_at(in, pos + 4);
    if (length == 0) return fail("empty handshake record");
    if (length > kMaxRecordPayload) return fail("record too long");
    size_t at = pos + kRecordHeader;
    const size_t end = at + length;
    // The handshake header, a byte at a time since it may straddle records.
    while (head_got < kHandshakeHeader && at < end) {
      if (at >= max_bytes) return fail("client hello too large");
      if (at >= in.size()) return f;
      head[head_got++] = byte_at(in, at++);
      ++have;
      if (head_got == 1 && head[0] != kClientHello) return fail("not a client hello");
      if (head_got == kHandshakeHeader) {
        const size_t body = size_t{head[1]} << 16 | size_t{head[2]} << 8 | head[3];
        need = kHandshakeHeader + body;
        if (need > max_bytes) return fail("client hello too large");
      }
    }
    if (head_got == kHandshakeHeader) {
      const size_t take = std::min(end - at, need - have);
      if (at + take > max_bytes) return fail("client hello too large");
      if (at + take > in.size()) return f;
      have += take;
      if (have == need) {
        f.status = HelloStatus::Done;
        f.hello_length = need;
        f.single = index == 0;
        return f;
      }
    }
    pos = end;
  }
}

// Copies the message out of its records; locate() has checked every header on the way.
std::string reassemble(std::string_view in, size_t length) {
  std::string out;
  out.reserve(length);
  for (size_t pos = 0; out.size() < length;) {
    const size_t record = size_t{byte_at(in, pos + 3)} << 8 | byte_at(in, pos + 4);
    const size_t take = std::min(record, length - out.size());
    out.append(in.substr(pos + kRecordHeader, take));
    pos += kRecordHeader + record;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The ClientHello body (RFC 8446 4.1.2, RFC 5246 7.4.1.2).

// A bounds-checked cursor: a read past the end fails and leaves `ok` false for good.
struct Reader {
  std::string_view data;
  size_t pos = 0;
  bool ok = true;

  size_t left() const { return data.size() - pos; }
  bool done() const { return pos == data.size(); }
  unsigned u8() { return static_cast<unsigned>(take(1).empty() ? 0 : byte_at(data, pos - 1)); }
  unsigned u16() {
    std::string_view b = take(2);
    return b.empty() ? 0 : (unsigned{byte_at(b, 0)} << 8 | byte_at(b, 1));
  }
  std::string_view take(size_t n) {
    if (!ok || n > left()) {
      ok = false;
      return {};
    }
    pos += n;
    return data.substr(pos - n, n);
  }
  // A vector with a 1- or 2-byte length prefix.
  std::string_view vec8() { return take(u8()); }
  std::string_view vec16() { return take(u16()); }
};

// Lowercases a host_name into `out` if it is a plain DNS name; leaves `out` empty otherwise.
void keep_host_name(std::string_view name, std::string& out) {
  if (name.size() > 253) return;
  std::string lower(name);
  size_t label = 0;
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c == '.') {
      if (label == 0) return;
      label = 0;
      continue;
    }
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok || ++label > 63) return;
  }
  if (label == 0) return;  // empty, or a trailing dot
  out = std::move(lower);
}

// RFC 6066 3: ServerNameList, at most one host_name; other name types (none assigned) are
// skipped by their 16-bit length, as their structure is presumed to be.
bool parse_server_name(std::string_view ext, ClientHelloInfo& out) {
  Reader r{ext};
  Reader list{r.vec16()};
  if (!r.ok || !r.done() || list.data.empty()) return false;
  std::string_view host;
  bool seen = false;
  while (!list.done()) {
    const unsigned type = list.u8();
    std::string_view name = list.vec16();
    if (!list.ok || name.empty()) return false;
    if (type == kNameTypeHostName) {
      if (seen) return false;
      seen = true;
      host = name;
    }
  }
  if (seen) keep_host_name(host, out.sni);
  return true;
}

// RFC 7301 3.1: ProtocolNameList <2..2^16-1> of ProtocolName <1..2^8-1>.
bool parse_alpn(std::string_view ext, ClientHelloInfo& out) {
  Reader r{ext};
  Reader list{r.vec16()};
  if (!r.ok || !r.done() || list.data.empty()) return false;
  while (!list.done()) {
    std::string_view name = list.vec8();
    if (!list.ok || name.empty()) return false;
    if (out.alpn.size() < kMaxAlpnKept) out.alpn.emplace_back(name);
  }
  return true;
}

HelloStatus invalid(ClientHelloInfo& out, std::string_view why) {
  out = ClientHelloInfo{};
  out.error = why;
  return HelloStatus::Invalid;
}

HelloStatus parse_hello(std::string_view body, ClientHelloInfo& out) {
  Reader r{body};
  const unsigned version = r.u16();
  r.take(32);  // random
  const std::string_view session_id = r.vec8();
  const std::string_view ciphers = r.vec16();
  const std::string_view compression = r.vec8();
  if (!r.ok) return invalid(out, "truncated client hello");
  if (version >> 8 != 3) return invalid(out, "bad client hello version");
  if (session_id.size() > 32) return invalid(out, "bad session id");
  if (ciphers.empty() || ciphers.size() % 2 != 0) return invalid(out, "bad cipher suites");
  if (compression.empty()) return invalid(out, "bad compression methods");
  if (r.done()) return HelloStatus::Done;  // no extensions (TLS 1.2 allows it)
  Reader exts{r.vec16()};
  if (!r.ok || !r.done()) return invalid(out, "bad extensions length");
  // RFC 8446 4.2: one extension of a type at most. 8 KiB of bits on the stack, no allocation.
  std::bitset<65536> seen;
  while (!exts.done()) {
    const unsigned type = exts.u16();
    const std::string_view data = exts.vec16();
    if (!exts.ok) return invalid(out, "bad extension length");
    if (seen.test(type)) return invalid(out, "duplicate extension");
    seen.set(type);
    if (type == kExtServerName && !parse_server_name(data, out))
      return invalid(out, "bad server_name extension");
    if (type == kExtAlpn && !parse_alpn(data, out)) return invalid(out, "bad alpn extension");
  }
  return HelloStatus::Done;
}

}  // namespace

HelloStatus read_client_hello(std::string_view in, ClientHelloInfo& out, size_t max_bytes) {
  out = ClientHelloInfo{};
  const Fragments f = locate(in, max_bytes);
  if (f.status == HelloStatus::Invalid) return invalid(out, f.error);
  if (f.status != HelloStatus::Done) return f.status;
  if (f.single) {
    return parse_hello(
        in.substr(kRecordHeader + kHandshakeHeader, f.hello_length - kHandshakeHeader), out);
  }
  const std::string message = reassemble(in, f.hello_length);
  return parse_hello(std::string_view(message).substr(kHandshakeHeader), out);
}

HelloStatus read_client_hello_sni(std::string_view in, std::string& sni, size_t max_bytes) {
  ClientHelloInfo info;
  const HelloStatus status = read_client_hello(in, info, max_bytes);
  sni = std::move(info.sni);
  return status;
}

}  // namespace weir::net
