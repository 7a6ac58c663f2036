#pragma once
// Typed, position-aware reading of a yaml-cpp tree (private to config/). Every problem becomes a
// Diagnostic at the key or value it concerns; readers report and return false, never throw.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.hpp"

namespace weir::config {

class Diagnostics {
 public:
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}

  void error(const YAML::Mark& mark, std::string message);
  void warning(const YAML::Mark& mark, std::string message);
  // Not tied to a position in the file ("FILE: message").
  void error_file(std::string message);

  SourcePos pos(const YAML::Mark& mark) const;
  bool has_errors() const;
  const std::string& file() const { return file_; }
  // Errors and warnings in file order.
  std::vector<Diagnostic> take_sorted();

 private:
  std::string file_;
  std::vector<Diagnostic> list_;
};

// One value read from the file: a map entry or a list item.
struct Field {
  std::string label;  // the key, or for a list item the key of its list, for messages
  YAML::Node value;
  YAML::Mark mark;      // where the value is (the key's position when the value is empty)
  YAML::Mark key_mark;  // where the key is (the value's position for a list item)
  bool is_item = false;
};

// Closest word within edit distance 2, or "".
std::string closest(std::string_view word, const std::vector<std::string_view>& candidates);

std::string describe(const YAML::Node& node);  // "a map", "a list", "\"text\"", "nothing"

bool read_string(Diagnostics& d, const Field& f, std::string& out);
// Non-negative decimal integer (plain scalar) in [min, max].
bool read_uint(Diagnostics& d, const Field& f, uint64_t min, uint64_t max, uint64_t& out);
bool read_uint32(Diagnostics& d, const Field& f, uint32_t min, uint32_t max, uint32_t& out);
// A duration with a unit; must be > 0 unless allow_zero.
bool read_duration(Diagnostics& d, const Field& f, bool allow_zero, Duration& out);
bool read_size(Diagnostics& d, const Field& f, uint64_t min, uint64_t max, uint64_t& out);
// The items of a list (a null value is an error too).
bool read_list(Diagnostics& d, const Field& f, std::vector<Field>& items);

// The entries of one YAML map, checked against the keys its context knows. Unknown keys,
// duplicate keys and non-map values are reported on construction.
class MapReader {
 public:
  // `context` names the map in messages: unknown key "x" in <context>. A null value (a key with
  // nothing after it) reads as an empty map.
  MapReader(Diagnostics& d, const Field& field, std::string context,
            std::vector<std::string_view> known);

  bool ok() const { return ok_; }
  const YAML::Mark& mark() const { return mark_; }
  const std::string& context() const { return context_; }
  const Field* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  // Reports "<context> needs "key"" at the map when the key is missing.
  const Field* require(std::string_view key);

  // Each reads an optional key: false when absent or invalid (invalid is reported).
  bool get_string(std::string_view key, std::string& out);
  bool get_uint32(std::string_view key, uint32_t min, uint32_t max, uint32_t& out);
  bool get_duration(std::string_view key, bool allow_zero, Duration& out);
  bool get_size(std::string_view key, uint64_t min, uint64_t max, uint64_t& out);

 private:
  Diagnostics& d_;
  std::string context_;
  YAML::Mark mark_;
  bool ok_ = false;
  std::vector<Field> entries_;
};

// "text" in double quotes, for messages.
inline std::string quote(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

// The 1-based line of a YAML position, as text (for "first defined at line N").
inline std::string line_of(const Diagnostics& d, const YAML::Mark& mark) {
  return std::to_string(d.pos(mark).line);
}

}  // namespace weir::config
