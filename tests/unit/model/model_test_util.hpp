#pragma once
// Helpers shared by the model tests: a config from a YAML string, a snapshot built from it.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.hpp"
#include "model/registry.hpp"
#include "model/snapshot.hpp"

namespace weir::model::test {

// The config a YAML text describes; null (and a test failure listing the diagnostics) if it
// does not load. Raw strings may start with a newline.
inline config::ConfigPtr load_yaml(std::string_view text) {
  if (!text.empty() && text.front() == '\n') text.remove_prefix(1);
  config::LoadResult r = config::load_config_string(text, "model_test.yaml");
  if (!r.ok()) {
    std::string all;
    for (const auto& d : r.diagnostics)
      all += "\n  " + d.format();
    ADD_FAILURE() << "config does not load:" << all;
  }
  return r.config;
}

// A snapshot of `cfg` built with `registry`; null (and a test failure) on errors.
inline SnapshotPtr build(const config::ConfigPtr& cfg, ServerRegistry& registry) {
  if (!cfg) return nullptr;
  std::vector<std::string> errors;
  SnapshotPtr snap = build_snapshot(cfg, registry, errors);
  if (!snap) {
    std::string all;
    for (const auto& e : errors)
      all += "\n  " + e;
    ADD_FAILURE() << "snapshot not built:" << all;
  }
  EXPECT_TRUE(errors.empty());
  return snap;
}

inline SnapshotPtr build(std::string_view yaml, ServerRegistry& registry) {
  return build(load_yaml(yaml), registry);
}

// The index of the backend named `name` in `snap`, or an invalid id.
inline BackendId backend_named(const Snapshot& snap, std::string_view name) {
  for (size_t i = 0; i < snap.backends.size(); ++i) {
    if (snap.backends[i].cfg->name == name) return BackendId(i);
  }
  return BackendId{};
}

// The index of the server named `name` in `b`, or an invalid id.
inline ServerId server_named(const BackendRuntime& b, std::string_view name) {
  for (size_t i = 0; i < b.servers.size(); ++i) {
    if (b.servers[i].name == name) return ServerId(i);
  }
  return ServerId{};
}

}  // namespace weir::model::test
