#pragma once
// Helpers shared by the config loader tests: load a YAML snippet and compare its diagnostics.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.hpp"

namespace weir::config::test {

// Raw strings start with a newline for readability; drop it so that line 1 is the first line.
inline std::string yaml(std::string_view text) {
  if (!text.empty() && text.front() == '\n') text.remove_prefix(1);
  return std::string(text);
}

inline LoadResult load(std::string_view text) {
  return load_config_string(yaml(text), "t.yaml");
}

inline std::vector<std::string> all_messages(const LoadResult& r) {
  std::vector<std::string> out;
  for (const Diagnostic& d : r.diagnostics)
    out.push_back(d.format());
  return out;
}

inline std::vector<std::string> errors(std::string_view text) {
  LoadResult r = load(text);
  std::vector<std::string> out;
  for (const Diagnostic& d : r.diagnostics) {
    if (!d.warning) out.push_back(d.format());
  }
  EXPECT_EQ(r.ok(), out.empty());
  return out;
}

// The one error of a config, or a failure listing them all.
inline std::string error(std::string_view text) {
  std::vector<std::string> e = errors(text);
  if (e.size() != 1) {
    std::string all;
    for (const auto& s : e)
      all += "\n  " + s;
    ADD_FAILURE() << "expected exactly one error, got " << e.size() << ":" << all;
    return e.empty() ? "" : e[0];
  }
  return e[0];
}

// A valid config whose backend block starts at line 5; `extra` is appended to the backend.
inline std::string with_backend(std::string_view extra) {
  return yaml(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)") + std::string(extra);
}

// A copy, so that `const Config& c = ok(load(...))` outlives the temporary result.
inline Config ok(const LoadResult& r) {
  EXPECT_TRUE(r.ok()) << ::testing::PrintToString(all_messages(r));
  return r.ok() ? *r.config : Config{};
}

// examples/weir.yaml, found from this file's path (or $WEIR_SOURCE_DIR when set).
inline std::filesystem::path example_path() {
  if (const char* dir = getenv("WEIR_SOURCE_DIR")) {
    return std::filesystem::path(dir) / "examples/weir.yaml";
  }
  return std::filesystem::path(__FILE__).parent_path() / "../../../examples/weir.yaml";
}

// A directory under /tmp removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "weir-config-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::filesystem::path write(const std::string& name, const std::string& content) const {
    std::ofstream(path_ / name) << content;
    return path_ / name;
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace weir::config::test
