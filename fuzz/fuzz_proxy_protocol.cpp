// Fuzzes the PROXY protocol parser (v1 and v2). The parser is called with everything received so
// far, so "fed in pieces" means "called on prefixes": every prefix must be NeedMore or give the
// whole input's verdict (Done: same header, from its `length` on; Invalid: same error, and from
// then on for good). A Done header's addresses must survive encode_v1/encode_v2 and parse again.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "fuzz_util.hpp"
#include "net/proxy_protocol.hpp"

using namespace weir::net::proxy_protocol;
using weir::fuzz::Buffer;
using weir::fuzz::Rng;
using weir::net::SocketAddress;

namespace {

Status parse_copy(std::string_view in, Header& h, size_t max) {
  const Buffer exact(in);  // so ASan sees a read past the end of what has "arrived"
  return parse(exact.view(), h, max);
}

bool same_address(const SocketAddress& a, const SocketAddress& b) {
  if (a.family() != b.family() || a.len != b.len) return false;
  if (a.family() == AF_INET) {
    const auto* x = reinterpret_cast<const sockaddr_in*>(&a.storage);
    const auto* y = reinterpret_cast<const sockaddr_in*>(&b.storage);
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  if (a.family() == AF_INET6) {
    const auto* x = reinterpret_cast<const sockaddr_in6*>(&a.storage);
    const auto* y = reinterpret_cast<const sockaddr_in6*>(&b.storage);
    return x->sin6_port == y->sin6_port &&
           std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
  }
  return a.family() == AF_UNSPEC;
}

bool same_header(const Header& a, const Header& b) {
  return a.version == b.version && a.local == b.local && a.length == b.length &&
         same_address(a.source, b.source) && same_address(a.destination, b.destination) &&
         a.authority == b.authority && a.unique_id == b.unique_id;
}

// The verdict on a prefix of n bytes, given the whole input's.
void check_prefix(std::string_view input, size_t n, const Header& whole, Status status,
                  size_t& invalid_from, size_t max) {
  Header h;
  const Status s = parse_copy(input.substr(0, n), h, max);
  switch (status) {
    case Status::Done:
      if (n < whole.length) {
        FUZZ_CHECK(s == Status::NeedMore);
      } else {
        FUZZ_CHECK(s == Status::Done && same_header(h, whole));
      }
      break;
    case Status::NeedMore:
      FUZZ_CHECK(s == Status::NeedMore);
      break;
    case Status::Invalid:
      // NeedMore up to some length, then the same Invalid ever after.
      if (s == Status::Invalid) {
        FUZZ_CHECK(h.error == whole.error);
        if (n < invalid_from) invalid_from = n;
      } else {
        FUZZ_CHECK(s == Status::NeedMore);
        FUZZ_CHECK(n < invalid_from);
      }
      break;
  }
  if (s != Status::Done) FUZZ_CHECK(h.length == 0 && h.version == 0);
}

void check_round_trip(const Header& h, size_t max) {
  for (const std::string& wire :
       {encode_v1(h.source, h.destination), encode_v2(h.source, h.destination)}) {
    Header back;
    FUZZ_CHECK(parse_copy(wire, back, max < 64 ? 64 : max) == Status::Done);
    FUZZ_CHECK(back.length == wire.size());
    FUZZ_CHECK(back.local == h.local);
    if (!h.local) {
      FUZZ_CHECK(same_address(back.source, h.source));
      FUZZ_CHECK(same_address(back.destination, h.destination));
    }
  }
}

void check(std::string_view input, size_t max) {
  Header whole;
  const Status status = parse_copy(input, whole, max);
  if (status == Status::Done) {
    FUZZ_CHECK(whole.length <= input.size());
    FUZZ_CHECK(whole.version == 1 || whole.version == 2);
    FUZZ_CHECK(whole.length >= 15);  // "PROXY UNKNOWN\r\n"; v2 is at least 16
    FUZZ_CHECK(whole.length <= (whole.version == 1 ? kV1MaxLength : max));
    FUZZ_CHECK(whole.error.empty());
    if (!whole.local) {
      FUZZ_CHECK(whole.source.family() == AF_INET || whole.source.family() == AF_INET6);
      FUZZ_CHECK(whole.destination.family() == AF_INET || whole.destination.family() == AF_INET6);
    } else {
      FUZZ_CHECK(whole.source.family() == AF_UNSPEC);
    }
    FUZZ_CHECK(whole.unique_id.size() <= kMaxUniqueId);
    FUZZ_CHECK(whole.authority.size() <= kMaxAuthority);
    check_round_trip(whole, max);
  } else {
    FUZZ_CHECK(whole.length == 0);
    FUZZ_CHECK((status == Status::Invalid) == !whole.error.empty());
  }

  // Prefixes: all the short ones, then pseudo-random cuts and the ones around the header's end.
  size_t invalid_from = input.size();
  const size_t all = input.size() < 160 ? input.size() : 160;
  for (size_t n = 0; n <= all; ++n)
    check_prefix(input, n, whole, status, invalid_from, max);
  Rng rng{0x9e3779b97f4a7c15ull ^ input.size()};
  for (int i = 0; i < 24 && input.size() > all; ++i)
    check_prefix(input, all + rng.next() % (input.size() - all + 1), whole, status, invalid_from,
                 max);
  if (status == Status::Done && whole.length > 0) {
    check_prefix(input, whole.length - 1, whole, status, invalid_from, max);
    check_prefix(input, whole.length, whole, status, invalid_from, max);
  }
  if (status == Status::Invalid) {
    // Invalid on the whole input means Invalid from some prefix on.
    check_prefix(input, input.size(), whole, status, invalid_from, max);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check(input, kV2DefaultMaxLength);
  check(input, 16 + 40);  // a tight bound, so "too long" is reached at every length byte value
  return 0;
}
