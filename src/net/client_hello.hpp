#pragma once
// Reads the server name (SNI) and ALPN offer out of a TLS ClientHello without decrypting or
// terminating anything, so a tcp-mode listener can route by name and pass the bytes through
// untouched. A pure function over the bytes received so far: the caller peeks, calls again with
// more on NeedMore, and forwards everything it read to the chosen server (nothing is consumed).
//
// Hostile input first: every length field is checked against its container and the RFC bounds
// before it is used, nothing recurses, and the only allocation besides the results is the
// reassembly buffer for a hello split over several records (at most `max_bytes`). A hello that
// fits one record, the common case, is parsed in place. The verdict on a prefix never
// contradicts the verdict on the whole input: NeedMore, or the same result.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace weir::net {

enum class HelloStatus { NeedMore, Done, NotTls, Invalid };

constexpr size_t kClientHelloMaxBytes = 64 * 1024;
constexpr size_t kMaxAlpnKept = 16;  // protocols kept from the ALPN offer; the rest are checked

struct ClientHelloInfo {
  // The RFC 6066 host_name, lowercased. Empty when the hello has no server_name extension, and
  // also when the name is not a plain DNS name: bytes outside [a-z0-9.-] after lowercasing, an
  // empty label (leading, trailing or double dot), a label over 63 or a name over 253 bytes.
  // Such a name cannot match a route, so the connection goes where a hello without SNI goes,
  // and the server, which sees the same bytes, answers it with the right TLS alert.
  // With Encrypted Client Hello (ECH) this is the outer, public name: the real one is encrypted
  // for the server, so routes for ECH clients must key on the public name.
  std::string sni;
  std::vector<std::string> alpn;  // the ALPN offer in the client's order, first kMaxAlpnKept
  std::string_view error;         // static text when Invalid
};

// NotTls when the first byte is not a handshake record (22) or the second not a version major
// of 3: decided on those bytes alone, so plain HTTP or a PROXY header is told apart at once.
// Invalid for anything malformed after that (lengths, record types, a handshake message other
// than ClientHello, a hello needing more than `max_bytes` of input: "client hello too large").
// Done as soon as the ClientHello message is complete, whatever follows it.
HelloStatus read_client_hello(std::string_view in, ClientHelloInfo& out,
                              size_t max_bytes = kClientHelloMaxBytes);

// The same, for callers that need only the name.
HelloStatus read_client_hello_sni(std::string_view in, std::string& sni,
                                  size_t max_bytes = kClientHelloMaxBytes);

}  // namespace weir::net
