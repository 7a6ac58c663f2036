#pragma once
// The subcommands of the `weir` binary. Each returns the process exit code:
// 0 success, 1 invalid configuration, 2 bad command-line usage, 3 runtime failure.
#include <string>
#include <vector>

#include "config/config.hpp"

namespace weir::app {

// `exe` and `argv`: how this process was started (SIGUSR2 starts them again: a binary upgrade).
int cmd_run(const std::string& config_path, const std::string& exe,
            const std::vector<std::string>& argv);
int cmd_check(const std::string& config_path);
// `redis`: "" or HOST:PORT / unix:/path, the session store of GET /session.
int cmd_whoami(const std::string& listen, const std::string& name, config::Duration delay,
               const std::string& redis = "");
int cmd_demo(const std::string& self_exe);

}  // namespace weir::app
