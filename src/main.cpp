// The command line only: parse arguments, hand over to app/.
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "app/commands.hpp"
#include "config/units.hpp"
#include "core/log.hpp"

namespace {

constexpr const char* kUsage =
    "usage:\n"
    "  weir run -c FILE        run the load balancer with that config (SIGHUP reloads,\n"
    "                          SIGTERM/SIGINT drain and stop)\n"
    "  weir check -c FILE      validate a config; prints every error as FILE:LINE:COL\n"
    "  weir demo               three whoami backends behind 127.0.0.1:8080 (admin :9901)\n"
    "  weir whoami --listen ADDR [--name NAME] [--delay DURATION] [--redis HOST:PORT]\n"
    "                          a small test backend; --redis (or unix:/path) keeps the\n"
    "                          sessions of GET /session in Redis\n"
    "  weir version            print the version\n";

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "weir: %s\n%s", msg.c_str(), kUsage);
  return 2;
}

std::string self_exe(const char* argv0) {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) return std::string(buf, static_cast<size_t>(n));
  return argv0;
}

}  // namespace

int main(int argc, char** argv) {
  // WEIR_LOG=debug|info|warn|error sets the log level (default info).
  if (const char* lvl = std::getenv("WEIR_LOG")) {
    std::string l = lvl;
    if (l == "debug")
      weir::log::set_level(weir::log::Level::Debug);
    else if (l == "warn")
      weir::log::set_level(weir::log::Level::Warn);
    else if (l == "error")
      weir::log::set_level(weir::log::Level::Error);
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage_error("missing command");
  const std::string cmd = args[0];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (cmd == "version" || cmd == "--version") {
    std::printf("weir %s\n", WEIR_VERSION);
    return 0;
  }
  if (cmd == "run" || cmd == "check") {
    std::string file;
    for (size_t i = 1; i < args.size(); ++i) {
      if ((args[i] == "-c" || args[i] == "--config") && i + 1 < args.size()) {
        file = args[++i];
      } else {
        return usage_error("unexpected argument \"" + args[i] + "\" for " + cmd);
      }
    }
    if (file.empty()) return usage_error(cmd + " needs -c FILE");
    if (cmd == "check") return weir::app::cmd_check(file);
    return weir::app::cmd_run(file, self_exe(argv[0]), std::vector<std::string>(argv, argv + argc));
  }
  if (cmd == "demo") {
    if (args.size() > 1) return usage_error("demo takes no arguments");
    return weir::app::cmd_demo(self_exe(argv[0]));
  }
  if (cmd == "whoami") {
    std::string listen, name = "whoami", redis;
    weir::config::Duration delay{0};
    for (size_t i = 1; i < args.size(); ++i) {
      bool has_value = i + 1 < args.size();
      if (args[i] == "--listen" && has_value) {
        listen = args[++i];
      } else if (args[i] == "--name" && has_value) {
        name = args[++i];
      } else if (args[i] == "--delay" && has_value) {
        auto d = weir::config::parse_duration(args[++i]);
        if (!d) return usage_error("--delay " + args[i] + ": expected a duration like 250ms");
        delay = *d;
      } else if (args[i] == "--redis" && has_value) {
        redis = args[++i];
      } else {
        return usage_error("unexpected argument \"" + args[i] + "\" for whoami");
      }
    }
    if (listen.empty()) return usage_error("whoami needs --listen ADDR");
    return weir::app::cmd_whoami(listen, name, delay, redis);
  }
  return usage_error("unknown command \"" + cmd + "\"");
}
