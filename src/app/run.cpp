// `weir run` and `weir check`.
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "app/commands.hpp"
#include "app/notify.hpp"
#include "app/runtime.hpp"
#include "app/upgrade.hpp"
#include "config/loader.hpp"
#include "core/log.hpp"
#include "net/tls/tls.hpp"

namespace weir::app {

int cmd_check(const std::string& path) {
  auto res = config::load_config_file(path);
  for (const auto& d : res.diagnostics)
    std::fprintf(stderr, "%s\n", d.format().c_str());
  if (!res.ok()) return 1;
  const auto& c = *res.config;
  bool cert_errors = false;
  for (const auto& d : net::tls::check_certificates(c, std::chrono::system_clock::now())) {
    std::fprintf(stderr, "%s\n", d.format().c_str());
    cert_errors = cert_errors || !d.warning;
  }
  if (cert_errors) return 1;
  size_t servers = 0, routes = 0;
  for (const auto& b : c.backends)
    servers += b.servers.size();
  for (const auto& l : c.listeners)
    routes += l.routes.size();
  std::printf("%s: ok (%zu listener%s, %zu route%s, %zu backend%s, %zu server%s)\n", path.c_str(),
              c.listeners.size(), c.listeners.size() == 1 ? "" : "s", routes,
              routes == 1 ? "" : "s", c.backends.size(), c.backends.size() == 1 ? "" : "s", servers,
              servers == 1 ? "" : "s");
  return 0;
}

namespace {

// glibc gives memory back to the kernel whenever the top of a thread's heap is free for more
// than a (self-adjusting) threshold, and the next burst faults it in again. With HTTP/2 (many
// streams, each with pooled 16 KiB blocks beyond the pool's cache) that churn cost more CPU than
// the proxying itself: bench scenario 9 measured 20-52 µs/request with trimming, a steady 13 µs
// without. Memory stays bounded by what the limits allow at peak; an idle process keeps its
// high-water mark (as HAProxy and NGINX do with their own pools).
void tune_allocator() {
  mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
}

}  // namespace

// How long a new process may take to load its config and listen before the upgrade is given up.
constexpr std::chrono::milliseconds kUpgradeTimeout{60000};

int cmd_run(const std::string& path, const std::string& exe, const std::vector<std::string>& argv) {
  tune_allocator();
  // Started by a binary upgrade: the running process's listening sockets come first.
  std::string upgrade_error;
  std::optional<UpgradeChild> upgrade = UpgradeChild::from_environment(upgrade_error);
  if (!upgrade_error.empty()) {
    log::error("upgrade: {}", upgrade_error);
    return 3;
  }
  auto res = config::load_config_file(path);
  for (const auto& d : res.diagnostics)
    std::fprintf(stderr, "%s\n", d.format().c_str());
  if (!res.ok()) return 1;

  // Signals are taken synchronously by this thread; every other thread inherits the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Runtime rt;
  if (int rc = rt.start(res.config, upgrade ? &upgrade->sockets() : nullptr); rc != 0) return rc;
  Notifier notify;  // systemd (Type=notify), when NOTIFY_SOCKET is set
  if (upgrade) {
    // The old process tells the manager MAINPID (it is the main process until then).
    upgrade->sockets().close_unused();
    upgrade->ready();
    upgrade.reset();
    log::info("upgrade: serving (pid {}); the previous process drains", ::getpid());
  } else {
    notify.ready("serving");
  }
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGUSR2) {
      log::info("SIGUSR2: upgrading to {}", exe);
      pid_t next = start_upgrade(exe, argv, rt.listening_sockets(), kUpgradeTimeout);
      if (next < 0) continue;
      log::info("upgrade: the new process (pid {}) is ready; draining this one", next);
      notify.send("MAINPID=" + std::to_string(next) + "\nSTATUS=upgraded: pid " +
                  std::to_string(next) + " serves; the previous process drains");
      rt.drain_and_stop(true);
      return 0;
    }
    if (sig == SIGUSR1) {
      log::info("SIGUSR1: reopening the access logs");
      rt.reopen_logs();
      continue;
    }
    if (sig == SIGHUP) {
      log::info("SIGHUP: reloading {}", path);
      notify.reloading();
      bool ok = rt.reload(path);
      notify.ready(ok ? "serving (reloaded)"
                      : "serving (reload refused: the previous config runs)");
      continue;
    }
    log::info("{}: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    notify.stopping();
    rt.drain_and_stop();
    return 0;
  }
}

}  // namespace weir::app
