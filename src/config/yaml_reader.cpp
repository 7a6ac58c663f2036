#include "config/yaml_reader.hpp"

#include <algorithm>
#include <map>

#include "config/units.hpp"

namespace weir::config {
namespace {

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

bool is_plain(const YAML::Node& node) {
  return node.Tag() == "?";
}

// What a message is about: "listen" for a map entry, "an item of "listen"" for a list item.
std::string subject(const Field& f) {
  return f.is_item ? "an item of " + quote(f.label) : quote(f.label);
}

}  // namespace

void Diagnostics::error(const YAML::Mark& mark, std::string message) {
  list_.push_back(Diagnostic{pos(mark), std::move(message), false});
}

void Diagnostics::warning(const YAML::Mark& mark, std::string message) {
  list_.push_back(Diagnostic{pos(mark), std::move(message), true});
}

void Diagnostics::error_file(std::string message) {
  list_.push_back(Diagnostic{SourcePos{file_, 0, 0}, std::move(message), false});
}

SourcePos Diagnostics::pos(const YAML::Mark& mark) const {
  if (mark.is_null() || mark.line < 0 || mark.column < 0) return SourcePos{file_, 0, 0};
  return SourcePos{file_, mark.line + 1, mark.column + 1};
}

bool Diagnostics::has_errors() const {
  return std::any_of(list_.begin(), list_.end(), [](const Diagnostic& d) { return !d.warning; });
}

std::vector<Diagnostic> Diagnostics::take_sorted() {
  std::stable_sort(list_.begin(), list_.end(), [](const Diagnostic& a, const Diagnostic& b) {
    if (a.pos.line != b.pos.line) return a.pos.line < b.pos.line;
    return a.pos.col < b.pos.col;
  });
  return std::move(list_);
}

std::string closest(std::string_view word, const std::vector<std::string_view>& candidates) {
  std::string best;
  size_t best_distance = 3;
  for (std::string_view c : candidates) {
    size_t distance = edit_distance(word, c);
    if (distance < best_distance && distance < std::max(word.size(), c.size())) {
      best_distance = distance;
      best = std::string(c);
    }
  }
  return best;
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return quote(node.Scalar());
    default:
      return "nothing";
  }
}

bool read_string(Diagnostics& d, const Field& f, std::string& out) {
  if (!f.value.IsScalar()) {
    d.error(f.mark, subject(f) + " must be a string, got " + describe(f.value));
    return false;
  }
  out = f.value.Scalar();
  return true;
}

bool read_uint(Diagnostics& d, const Field& f, uint64_t min, uint64_t max, uint64_t& out) {
  const std::string expected = quote(f.label) + " must be an integer from " + std::to_string(min) +
                               " to " + std::to_string(max) + ", got ";
  if (!f.value.IsScalar()) {
    d.error(f.mark, expected + describe(f.value));
    return false;
  }
  const std::string& s = f.value.Scalar();
  bool digits = !s.empty() && s.size() <= 19 &&
                std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!is_plain(f.value)) {
    d.error(f.mark, expected + "the string " + quote(s));
    return false;
  }
  if (!digits || std::stoull(s) < min || std::stoull(s) > max) {
    d.error(f.mark, expected + quote(s));
    return false;
  }
  out = std::stoull(s);
  return true;
}

bool read_uint32(Diagnostics& d, const Field& f, uint32_t min, uint32_t max, uint32_t& out) {
  uint64_t v = 0;
  if (!read_uint(d, f, min, max, v)) return false;
  out = static_cast<uint32_t>(v);
  return true;
}

bool read_duration(Diagnostics& d, const Field& f, bool allow_zero, Duration& out) {
  if (!f.value.IsScalar()) {
    d.error(f.mark, quote(f.label) + " must be a duration such as 2s, got " + describe(f.value));
    return false;
  }
  const std::string& s = f.value.Scalar();
  std::string why = duration_error(s);
  if (!why.empty()) {
    d.error(f.mark, quote(f.label) + ": " + why);
    return false;
  }
  Duration value = *parse_duration(s);
  if (!allow_zero && value.count() == 0) {
    d.error(f.mark, quote(f.label) + " must be longer than 0");
    return false;
  }
  out = value;
  return true;
}

bool read_size(Diagnostics& d, const Field& f, uint64_t min, uint64_t max, uint64_t& out) {
  if (!f.value.IsScalar()) {
    d.error(f.mark, quote(f.label) + " must be a size such as 16KiB, got " + describe(f.value));
    return false;
  }
  const std::string& s = f.value.Scalar();
  std::string why = size_error(s);
  if (!why.empty()) {
    d.error(f.mark, quote(f.label) + ": " + why);
    return false;
  }
  uint64_t value = *parse_size(s);
  if (value < min || value > max) {
    d.error(f.mark, quote(f.label) + " must be from " + std::to_string(min) + " to " +
                        std::to_string(max) + " bytes, got " + quote(s));
    return false;
  }
  out = value;
  return true;
}

bool read_list(Diagnostics& d, const Field& f, std::vector<Field>& items) {
  if (!f.value.IsSequence()) {
    d.error(f.mark, quote(f.label) + " must be a list, got " + describe(f.value));
    return false;
  }
  for (YAML::Node item : f.value) {
    // yaml-cpp places an empty item at the token after it, so point at the list instead.
    if (item.IsNull()) {
      d.error(f.mark, quote(f.label) + " has an empty item");
      continue;
    }
    YAML::Mark mark = item.Mark().is_null() ? f.mark : item.Mark();
    items.push_back(Field{f.label, item, mark, mark, true});
  }
  return true;
}

MapReader::MapReader(Diagnostics& d, const Field& field, std::string context,
                     std::vector<std::string_view> known)
    : d_(d), context_(std::move(context)), mark_(field.mark) {
  const YAML::Node& node = field.value;
  if (node.IsNull()) {
    ok_ = true;
    return;
  }
  if (!node.IsMap()) {
    d_.error(field.mark, subject(field) + " must be a map, got " + describe(node));
    return;
  }
  ok_ = true;
  if (!node.Mark().is_null()) mark_ = node.Mark();
  std::map<std::string, YAML::Mark, std::less<>> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    YAML::Node key = it->first;  // copies: the iterator hands out temporaries
    YAML::Node value = it->second;
    if (!key.IsScalar()) {
      d_.error(key.Mark(), "keys must be plain strings, got " + describe(key));
      continue;
    }
    const std::string& name = key.Scalar();
    if (auto first = seen.find(name); first != seen.end()) {
      d_.error(key.Mark(), "duplicate key " + quote(name) + " (first at line " +
                               std::to_string(first->second.line + 1) + ")");
      continue;
    }
    seen.emplace(name, key.Mark());
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::string message = "unknown key " + quote(name) + " in " + context_;
      if (name == "<<") {
        message = "YAML merge keys (<<) are not supported";
      } else if (std::string near = closest(name, known); !near.empty()) {
        message += "; did you mean " + quote(near) + "?";
      }
      d_.error(key.Mark(), std::move(message));
      continue;
    }
    YAML::Mark value_mark = value.IsNull() || value.Mark().is_null() ? key.Mark() : value.Mark();
    entries_.push_back(Field{name, value, value_mark, key.Mark()});
  }
}

const Field* MapReader::find(std::string_view key) const {
  for (const Field& f : entries_) {
    if (f.label == key) return &f;
  }
  return nullptr;
}

const Field* MapReader::require(std::string_view key) {
  const Field* f = find(key);
  if (f == nullptr && ok_) d_.error(mark_, context_ + " needs " + quote(key));
  return f;
}

bool MapReader::get_string(std::string_view key, std::string& out) {
  const Field* f = find(key);
  return f != nullptr && read_string(d_, *f, out);
}

bool MapReader::get_uint32(std::string_view key, uint32_t min, uint32_t max, uint32_t& out) {
  const Field* f = find(key);
  return f != nullptr && read_uint32(d_, *f, min, max, out);
}

bool MapReader::get_duration(std::string_view key, bool allow_zero, Duration& out) {
  const Field* f = find(key);
  return f != nullptr && read_duration(d_, *f, allow_zero, out);
}

bool MapReader::get_size(std::string_view key, uint64_t min, uint64_t max, uint64_t& out) {
  const Field* f = find(key);
  return f != nullptr && read_size(d_, *f, min, max, out);
}

}  // namespace weir::config
