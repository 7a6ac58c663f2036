// The HTTP/2 front end: any bytes a client sends after the h2c preface go through nghttp2 and
// our session glue (streams, pipes, HTTP/1.1 translation, budgets, exchanges answered 502 by a
// refused server). Nothing may crash, leak or hang: once the client closes, the connection must
// close within a bounded number of reactor turns.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "config/loader.hpp"
#include "fuzz_util.hpp"
#include "model/snapshot.hpp"
#include "net/socket.hpp"
#include "proxy/h1_connection.hpp"
#include "proxy/worker.hpp"

namespace {

using namespace weir;

constexpr const char* kConfig = R"(
listeners:
  - name: h2c
    listen: 127.0.0.1:18080
    h2c: true
    backend: web
backends:
  - name: web
    retries: 0
    servers:
      - address: 127.0.0.1:9
limits:
  max_header_bytes: 4KiB
  h2_max_concurrent_streams: 16
)";

struct World {
  model::ServerRegistry registry;
  std::unique_ptr<proxy::Worker> worker;

  World() {
    auto res = config::load_config_string(kConfig, "fuzz.yaml");
    if (!res.ok()) std::abort();
    std::vector<std::string> errors;
    auto snap = model::build_snapshot(res.config, registry, errors);
    if (!snap) std::abort();
    worker = std::make_unique<proxy::Worker>(
        0, snap, std::vector<proxy::ListenSocket>{}, std::vector<std::string>{"127.0.0.1:18080"},
        std::vector<std::shared_ptr<proxy::ListenerGate>>{std::make_shared<proxy::ListenerGate>()});
  }
};

World& world() {
  static World* w = new World();  // lives for the whole process (no exit-time destruction)
  return *w;
}

void drain(int fd) {
  char buf[16384];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 32 * 1024) return 0;
  World& w = world();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  int big = 256 * 1024;
  ::setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  ::setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  (void)!::write(sv[1], kPreface.data(), kPreface.size());
  (void)!::write(sv[1], data, size);

  auto& stats = w.worker->stats();
  stats.connections_open = 1;
  auto* conn = new proxy::H1Connection(*w.worker, sv[0], "127.0.0.1", 0);
  w.worker->add_connection(conn);
  conn->start();
  Reactor& r = w.worker->reactor();
  for (int turn = 0; turn < 20 && stats.connections_open > 0; ++turn) {
    r.run_once(1);
    drain(sv[1]);
  }
  ::shutdown(sv[1], SHUT_WR);  // the client is done sending
  for (int turn = 0; turn < 200 && stats.connections_open > 0; ++turn) {
    r.run_once(1);
    drain(sv[1]);
  }
  FUZZ_CHECK(stats.connections_open == 0);  // closed within bounded turns: no hang
  r.run_pending();
  w.worker->pool().close_all();
  r.run_pending();
  ::close(sv[1]);
  return 0;
}
