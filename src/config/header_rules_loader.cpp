// `request_headers:` / `response_headers:` of a route: header names and values are checked here
// so that a rule can never put an invalid or smuggling-prone field on the wire.
#include "config/header_rules_loader.hpp"

#include "config/loader_parts.hpp"

#include <cstdio>
#include <map>
#include <string_view>

namespace weir::config {
namespace {

char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// tchar of RFC 9110 5.6.2: a field name is one or more of these.
constexpr std::string_view kTokenPunctuation = "!#$%&'*+-.^_`|~";

bool is_tchar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         kTokenPunctuation.find(c) != std::string_view::npos;
}

// Fields that weir writes itself from the message framing, and the hop-by-hop fields that it
// never forwards (the codec's fixed list): a rule on them would either be dropped silently or
// desynchronise the framing between weir and its peers, so it is a config error.
constexpr std::string_view kFraming[] = {"content-length", "transfer-encoding"};
constexpr std::string_view kHopByHop[] = {
    "connection", "keep-alive", "proxy-connection",   "te",
    "trailer",    "upgrade",    "proxy-authenticate", "proxy-authorization"};

// One of `remove`, `set`, `add` of one block: what its messages start with.
struct Op {
  Diagnostics& d;
  std::string_view key;  // "remove", "set" or "add"
  bool request;          // in request_headers

  void error(const YAML::Mark& mark, const std::string& message) const {
    d.error(mark, quote(key) + ": " + message);
  }
};

bool check_name(const Op& op, const YAML::Mark& mark, const std::string& name) {
  if (name.empty()) {
    op.error(mark, "header name must not be empty");
    return false;
  }
  for (char c : name) {
    if (!is_tchar(c)) {
      op.error(mark, "invalid header name " + quote(name) + ": only letters, digits and " +
                         std::string(kTokenPunctuation) + " are allowed");
      return false;
    }
  }
  const std::string low = lower(name);
  for (std::string_view f : kFraming) {
    if (low == f) {
      op.error(mark, quote(name) +
                         " cannot be changed by header rules: weir writes it from the message "
                         "framing");
      return false;
    }
  }
  for (std::string_view f : kHopByHop) {
    if (low == f) {
      op.error(mark, quote(name) +
                         " cannot be changed by header rules: it is a hop-by-hop header, which "
                         "weir never forwards");
      return false;
    }
  }
  if (op.request && low == "host" && op.key != "set") {
    op.error(mark, "a request carries exactly one Host: use \"set\" to replace it");
    return false;
  }
  return true;
}

// A value is sent as written. Leading or trailing whitespace is rejected rather than trimmed:
// HTTP strips it from field values, so the value could never arrive as written, and silently
// changing what the file says is worse than saying so. (Plain YAML scalars are trimmed by YAML
// itself; this only concerns quoted ones.)
bool check_value(const Op& op, const YAML::Mark& mark, const std::string& name,
                 const std::string& value) {
  const std::string subject = "header value for " + quote(name);
  for (char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\r' || c == '\n') {
      op.error(mark, subject + " contains a line break");
      return false;
    }
    if (c == 0) {
      op.error(mark, subject + " contains a NUL byte");
      return false;
    }
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", c);
      op.error(mark, subject + " contains the control character " + hex);
      return false;
    }
  }
  auto blank = [](char c) { return c == ' ' || c == '\t'; };
  if (!value.empty() && (blank(value.front()) || blank(value.back()))) {
    op.error(mark, subject + " has leading or trailing whitespace");
    return false;
  }
  return true;
}

void load_remove(const Op& op, const Field& f, std::vector<std::string>& out) {
  std::vector<Field> items;
  if (!read_list(op.d, f, items)) return;
  std::map<std::string, YAML::Mark, std::less<>> seen;  // lower-cased name → first mark
  for (const Field& item : items) {
    std::string name;
    if (!read_string(op.d, item, name) || !check_name(op, item.mark, name)) continue;
    auto [it, inserted] = seen.emplace(lower(name), item.mark);
    if (!inserted) {
      op.error(item.mark, "duplicate header name " + quote(name) + " (first at line " +
                              line_of(op.d, it->second) + ")");
      continue;
    }
    out.push_back(std::move(name));
  }
}

// `set` or `add`: a map of name to value, kept in file order. In `set` two spellings of one
// name (X-Env, x-env) contradict each other; in `add` they are two fields.
void load_pairs(const Op& op, const Field& f,
                std::vector<std::pair<std::string, std::string>>& out) {
  if (f.value.IsNull()) return;  // a key with nothing after it, as for every map in the loader
  if (!f.value.IsMap()) {
    op.d.error(f.mark, quote(f.label) + " must be a map of header names to values, got " +
                           describe(f.value));
    return;
  }
  const bool unique_names = op.key == "set";
  std::map<std::string, YAML::Mark, std::less<>> exact;   // name as written → first mark
  std::map<std::string, YAML::Mark, std::less<>> folded;  // lower-cased name → first mark
  for (auto it = f.value.begin(); it != f.value.end(); ++it) {
    YAML::Node key = it->first;  // copies: the iterator hands out temporaries
    YAML::Node value = it->second;
    if (!key.IsScalar()) {
      op.error(key.Mark(), "header names must be strings, got " + describe(key));
      continue;
    }
    const std::string& name = key.Scalar();
    if (auto first = exact.find(name); first != exact.end()) {
      op.d.error(key.Mark(), "duplicate key " + quote(name) + " (first at line " +
                                 line_of(op.d, first->second) + ")");
      continue;
    }
    exact.emplace(name, key.Mark());
    if (!check_name(op, key.Mark(), name)) continue;
    if (unique_names) {
      auto [first, inserted] = folded.emplace(lower(name), key.Mark());
      if (!inserted) {
        op.error(key.Mark(), "duplicate header name " + quote(name) + " (first at line " +
                                 line_of(op.d, first->second) +
                                 "; header names are case-insensitive)");
        continue;
      }
    }
    const YAML::Mark value_mark =
        value.IsNull() || value.Mark().is_null() ? key.Mark() : value.Mark();
    if (!value.IsScalar()) {
      op.error(value_mark,
               "header value for " + quote(name) + " must be a string, got " + describe(value));
      continue;
    }
    if (!check_value(op, value_mark, name, value.Scalar())) continue;
    out.emplace_back(name, value.Scalar());
  }
}

}  // namespace

void load_header_rules(Diagnostics& d, const Field& f, bool request, HeaderRules& out) {
  MapReader m(d, f, f.label, {"remove", "set", "add"});
  if (!m.ok()) return;
  if (const Field* remove = m.find("remove")) {
    load_remove(Op{d, "remove", request}, *remove, out.remove);
  }
  if (const Field* set = m.find("set")) load_pairs(Op{d, "set", request}, *set, out.set);
  if (const Field* add = m.find("add")) load_pairs(Op{d, "add", request}, *add, out.add);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = ascii_lower(c);
  return out;
}

}  // namespace weir::config
