#pragma once
// A strict JSON (RFC 8259) parser for tests that check what weir writes: no nlohmann-json on
// the build machine. Refuses what a strict parser refuses (raw control characters in strings,
// bad escapes, lone surrogates, leading zeros, trailing commas, trailing garbage) and says where.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace weir::test::json {

struct Value;
using Object = std::map<std::string, Value>;
using Array = std::vector<Value>;

struct Value {
  std::variant<std::nullptr_t, bool, double, std::string, Array, Object> v;
  // Numbers keep their text too, so integers can be compared exactly.
  std::string number_text;

  bool is_null() const { return std::holds_alternative<std::nullptr_t>(v); }
  bool is_bool() const { return std::holds_alternative<bool>(v); }
  bool is_number() const { return std::holds_alternative<double>(v); }
  bool is_string() const { return std::holds_alternative<std::string>(v); }
  bool is_array() const { return std::holds_alternative<Array>(v); }
  bool is_object() const { return std::holds_alternative<Object>(v); }
  bool as_bool() const { return std::get<bool>(v); }
  double as_number() const { return std::get<double>(v); }
  const std::string& as_string() const { return std::get<std::string>(v); }
  const Array& as_array() const { return std::get<Array>(v); }
  const Object& as_object() const { return std::get<Object>(v); }
  // A member of an object, or null if absent (or not an object).
  const Value* get(std::string_view key) const {
    if (!is_object()) return nullptr;
    auto it = as_object().find(std::string(key));
    return it == as_object().end() ? nullptr : &it->second;
  }
};

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  // The document, or nullopt with error() set.
  std::optional<Value> parse() {
    Value v;
    ws();
    if (!value(v, 0)) return std::nullopt;
    ws();
    if (i_ != s_.size()) return fail("trailing characters");
    return v;
  }
  const std::string& error() const { return error_; }

 private:
  std::nullopt_t fail(std::string_view why) {
    if (error_.empty()) error_ = std::string(why) + " at offset " + std::to_string(i_);
    return std::nullopt;
  }
  bool bad(std::string_view why) {
    fail(why);
    return false;
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  bool eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  bool value(Value& out, int depth) {
    if (depth > 64) return bad("nested too deep");
    if (i_ >= s_.size()) return bad("unexpected end");
    char c = s_[i_];
    if (c == '{') return object(out, depth);
    if (c == '[') return array(out, depth);
    if (c == '"') {
      std::string str;
      if (!string(str)) return false;
      out.v = std::move(str);
      return true;
    }
    if (literal("true")) {
      out.v = true;
      return true;
    }
    if (literal("false")) {
      out.v = false;
      return true;
    }
    if (literal("null")) {
      out.v = nullptr;
      return true;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return number(out);
    return bad("unexpected character");
  }

  bool object(Value& out, int depth) {
    ++i_;  // {
    Object obj;
    ws();
    if (eat('}')) {
      out.v = std::move(obj);
      return true;
    }
    for (;;) {
      ws();
      std::string key;
      if (i_ >= s_.size() || s_[i_] != '"') return bad("expected a member name");
      if (!string(key)) return false;
      ws();
      if (!eat(':')) return bad("expected ':'");
      ws();
      Value v;
      if (!value(v, depth + 1)) return false;
      if (!obj.emplace(std::move(key), std::move(v)).second) return bad("duplicate member name");
      ws();
      if (eat('}')) break;
      if (!eat(',')) return bad("expected ',' or '}'");
    }
    out.v = std::move(obj);
    return true;
  }

  bool array(Value& out, int depth) {
    ++i_;  // [
    Array arr;
    ws();
    if (eat(']')) {
      out.v = std::move(arr);
      return true;
    }
    for (;;) {
      ws();
      Value v;
      if (!value(v, depth + 1)) return false;
      arr.push_back(std::move(v));
      ws();
      if (eat(']')) break;
      if (!eat(',')) return bad("expected ',' or ']'");
    }
    out.v = std::move(arr);
    return true;
  }

  static bool digit(char c) { return c >= '0' && c <= '9'; }

  bool number(Value& out) {
    size_t start = i_;
    eat('-');
    if (i_ >= s_.size() || !digit(s_[i_])) return bad("bad number");
    if (s_[i_] == '0') {
      ++i_;
      if (i_ < s_.size() && digit(s_[i_])) return bad("leading zero");
    } else {
      while (i_ < s_.size() && digit(s_[i_]))
        ++i_;
    }
    if (eat('.')) {
      if (i_ >= s_.size() || !digit(s_[i_])) return bad("bad fraction");
      while (i_ < s_.size() && digit(s_[i_]))
        ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (!eat('+')) eat('-');
      if (i_ >= s_.size() || !digit(s_[i_])) return bad("bad exponent");
      while (i_ < s_.size() && digit(s_[i_]))
        ++i_;
    }
    out.number_text = std::string(s_.substr(start, i_ - start));
    out.v = std::stod(out.number_text);
    return true;
  }

  bool hex4(uint32_t& out) {
    if (s_.size() - i_ < 4) return bad("short \\u escape");
    out = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      out <<= 4;
      if (c >= '0' && c <= '9')
        out |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        out |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        out |= static_cast<uint32_t>(c - 'A' + 10);
      else
        return bad("bad hex digit in \\u escape");
    }
    return true;
  }

  static void utf8(uint32_t cp, std::string& out) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  bool string(std::string& out) {
    ++i_;  // "
    for (;;) {
      if (i_ >= s_.size()) return bad("unterminated string");
      unsigned char c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return bad("raw control character in a string");
      if (c != '\\') {
        out.push_back(static_cast<char>(c));
        ++i_;
        continue;
      }
      ++i_;
      if (i_ >= s_.size()) return bad("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out.push_back(e);
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          uint32_t cp;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (!literal("\\u") || !hex4(lo) || lo < 0xDC00 || lo > 0xDFFF)
              return bad("lone high surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return bad("lone low surrogate");
          }
          utf8(cp, out);
          break;
        }
        default:
          return bad("bad escape");
      }
    }
  }

  std::string_view s_;
  size_t i_ = 0;
  std::string error_;
};

}  // namespace weir::test::json
