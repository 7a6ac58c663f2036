// `weir demo`: three whoami backends (child processes of this binary) behind a load balancer on
// 127.0.0.1:8080 with the admin API on 127.0.0.1:9901, until Ctrl-C.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "app/commands.hpp"
#include "app/runtime.hpp"
#include "config/loader.hpp"
#include "core/log.hpp"

namespace weir::app {
namespace {

constexpr const char* kDemoConfig = R"(# weir demo configuration
workers: 1
admin:
  listen: 127.0.0.1:9901
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - match:
          path_prefix: /api/
        backend: api
      - backend: web
backends:
  - name: web
    balance: round_robin
    servers:
      - address: 127.0.0.1:9001
        name: whoami-1
        weight: 2
      - address: 127.0.0.1:9002
        name: whoami-2
      - address: 127.0.0.1:9003
        name: whoami-3
  - name: api
    balance: random
    servers:
      - address: 127.0.0.1:9003
        name: whoami-3
)";

pid_t spawn_whoami(const std::string& exe, const std::string& listen, const std::string& name) {
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the demo
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, nullptr);
    execl(exe.c_str(), exe.c_str(), "whoami", "--listen", listen.c_str(), "--name", name.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

}  // namespace

int cmd_demo(const std::string& self_exe) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::vector<pid_t> children;
  for (int i = 1; i <= 3; ++i) {
    pid_t pid = spawn_whoami(self_exe, "127.0.0.1:900" + std::to_string(i),
                             "whoami-" + std::to_string(i));
    if (pid < 0) {
      std::fprintf(stderr, "weir demo: cannot start whoami-%d\n", i);
      for (pid_t c : children) kill(c, SIGTERM);
      return 3;
    }
    children.push_back(pid);
  }
  auto stop_children = [&] {
    for (pid_t c : children) kill(c, SIGTERM);
    for (pid_t c : children) waitpid(c, nullptr, 0);
  };

  auto res = config::load_config_string(kDemoConfig, "<demo>");
  if (!res.ok()) {
    for (const auto& d : res.diagnostics) std::fprintf(stderr, "%s\n", d.format().c_str());
    stop_children();
    return 1;
  }
  Runtime rt;
  if (int rc = rt.start(res.config); rc != 0) {
    stop_children();
    return rc;
  }
  std::printf(
      "\nweir demo is running:\n"
      "  load balancer  http://127.0.0.1:8080  (round robin 2:1:1 over whoami-1..3)\n"
      "  admin          http://127.0.0.1:9901\n"
      "  backends       whoami-1..3 on 127.0.0.1:9001-9003\n\n"
      "Try:\n"
      "  curl http://127.0.0.1:8080/                      # each answer names its server\n"
      "  for i in 1 2 3 4; do curl -s http://127.0.0.1:8080/ | head -1; done\n"
      "  curl http://127.0.0.1:8080/api/                  # routed by path to whoami-3\n"
      "  curl 'http://127.0.0.1:8080/?delay=300ms&status=201'\n"
      "  curl http://127.0.0.1:9901/api/v1/backends\n"
      "  curl http://127.0.0.1:9901/metrics\n\n"
      "Ctrl-C stops everything.\n\n");
  std::fflush(stdout);
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0 || sig == SIGHUP) continue;
    break;
  }
  rt.drain_and_stop();
  stop_children();
  return 0;
}

}  // namespace weir::app
