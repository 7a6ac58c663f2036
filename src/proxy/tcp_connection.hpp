#pragma once
// A client connection of a layer-4 listener (`mode: tcp`): an Exchange picks a server and
// connects (retrying elsewhere on failure), then bytes flow both ways through a Tunnel. The
// client's first bytes wait in its buffer until the server connection stands.
#include <memory>

#include "proxy/client_conn.hpp"

namespace weir::proxy {

class Exchange;
class Tunnel;

class TcpConnection final : public ClientConn, public Downstream {
 public:
  TcpConnection(Worker& w, int fd, ClientOrigin origin);
  ~TcpConnection() override;

  void start() override;
  void begin_drain() override {}  // a tunnel ends when its peers end it (or at the deadline)
  bool holds_tunnel() const override { return true; }

  // Downstream: only the connect matters here; nothing is parsed or answered.
  const ClientInfo& client() const override { return client_; }
  BodyRead read_body(BodySink&) override { return BodyRead::Idle; }
  void send_interim(const http::ResponseHead&) override {}
  HeadResult send_head(const ResponseOut&) override { return HeadResult::Refused; }
  size_t send_body(std::string_view) override { return 0; }
  bool finish_body(std::string_view) override { return true; }
  void wake() override { run(); }
  bool upgrade(UpstreamConn* up, ServerSlot& slot) override;
  void exchange_done(bool response_complete, bool request_complete) override;

 private:
  bool turn() override;
  void on_timeout() override { close(); }
  void on_close() override;
  void write_access_log();

  Exchange* ex_ = nullptr;
  std::unique_ptr<Tunnel> tunnel_;
  TimePoint started_{};
  int64_t started_ms_ = 0;
};

}  // namespace weir::proxy
