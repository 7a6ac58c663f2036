#include "proxy/head_edits.hpp"

#include <algorithm>

namespace weir::proxy {

HeaderEdits::Span HeaderEdits::store(std::string_view s) {
  Span sp{static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(s.size())};
  arena_.append(s);
  return sp;
}

void HeaderEdits::remove(std::string_view name) {
  std::erase_if(added_, [&](const Entry& e) { return http::iequals(view(e.name), name); });
  if (!removes(name)) removed_.push_back(store(name));
}

void HeaderEdits::set(std::string_view name, std::string_view value) {
  remove(name);
  add(name, value);
}

void HeaderEdits::add(std::string_view name, std::string_view value) {
  Entry e;
  e.name = store(name);
  e.value = store(value);
  added_.push_back(e);
}

bool HeaderEdits::removes(std::string_view name) const {
  for (const Span& s : removed_)
    if (http::iequals(view(s), name)) return true;
  return false;
}

void HeaderEdits::clear() {
  if (empty() && arena_.empty()) return;
  removed_.clear();
  added_.clear();
  arena_.clear();
}

}  // namespace weir::proxy
