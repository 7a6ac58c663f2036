#pragma once
// The HTTP/2 side of an http health check (backends with protocol h2, h2c, or auto when ALPN
// chose h2): one GET on stream 1 of a fresh connection, nghttp2 as a client over whatever the
// probe's socket reads and writes. Only the response head is needed: the :status decides.
#include <cstdint>
#include <string>
#include <string_view>

struct nghttp2_session;

namespace weir::health {

class H2Probe {
 public:
  H2Probe(std::string_view scheme, std::string_view authority, std::string_view path);
  ~H2Probe();
  H2Probe(const H2Probe&) = delete;
  H2Probe& operator=(const H2Probe&) = delete;

  bool ok() const { return session_ != nullptr; }
  // What must be written now (the preface, SETTINGS, the request; SETTINGS ACK and the like
  // after feed()).
  std::string take_output();
  enum class Result : uint8_t { NeedMore, Done, Error };
  // Response bytes; Done once stream 1's final head came (`status`), Error on a protocol
  // error or a reset stream (`error` says which).
  Result feed(std::string_view in, uint16_t& status, std::string& error);

 private:
  friend struct H2ProbeCallbacks;
  nghttp2_session* session_ = nullptr;
  uint16_t status_ = 0;
  bool head_done_ = false;
  bool reset_ = false;
  uint32_t reset_code_ = 0;
};

}  // namespace weir::health
