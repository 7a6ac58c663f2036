#pragma once
// Typed edits of a message head, made by filters and applied by the codec that writes the head
// (HTTP/1.1 bytes or HTTP/2 HEADERS): no "Name: value\r\n" strings in between. Added names and
// values are copied into one arena owned by the edits (kept across the requests of a pooled
// exchange, so steady-state editing allocates nothing).
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "http/parser.hpp"

namespace weir::proxy {

class HeaderEdits {
 public:
  // Drops every received field of that name (case-insensitive) and every earlier add of it.
  void remove(std::string_view name);
  // remove(name), then add(name, value).
  void set(std::string_view name, std::string_view value);
  // Appends a field after the received ones.
  void add(std::string_view name, std::string_view value);

  bool removes(std::string_view name) const;
  bool empty() const { return removed_.empty() && added_.empty(); }
  void clear();

  // The added fields, in order.
  template <class F>
  void for_each_added(F&& f) const {
    for (const Entry& e : added_)
      f(view(e.name), view(e.value));
  }
  size_t added_count() const { return added_.size(); }

 private:
  struct Span {
    uint32_t at = 0;
    uint32_t len = 0;
  };
  struct Entry {
    Span name;
    Span value;
  };
  Span store(std::string_view s);
  std::string_view view(Span s) const { return std::string_view(arena_).substr(s.at, s.len); }

  std::vector<Span> removed_;
  std::vector<Entry> added_;
  std::string arena_;
};

// A final response head on its way to the client: what the server sent (its fields are views
// into the server's response buffer; none for weir's own answers), and the edits of weir's
// filters. Codecs drop the server's hop-by-hop and framing fields and state their own framing.
struct ResponseOut {
  uint16_t status = 200;
  std::string_view reason;               // HTTP/1.1 status text; empty = the standard one
  std::span<const http::Header> fields;  // as received
  http::BodyKind body = http::BodyKind::None;
  uint64_t content_length = 0;   // body == ContentLength
  HeaderEdits* edits = nullptr;  // never null once an exchange hands the head out
  std::string_view local_body;   // weir's own answer: the whole body
  bool local = false;            // weir's own answer (no server fields)
  bool last = false;             // the connection ends after this answer

  // Received fields that survive the edits, then the added ones: f(name, value).
  template <class F>
  void for_each_field(F&& f) const {
    if (!edits || edits->empty()) {
      for (const auto& h : fields)
        f(h.name, h.value);
      return;
    }
    for (const auto& h : fields)
      if (!edits->removes(h.name)) f(h.name, h.value);
    edits->for_each_added(f);
  }
};

}  // namespace weir::proxy
