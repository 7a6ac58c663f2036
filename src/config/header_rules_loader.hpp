#pragma once
// `request_headers:` and `response_headers:` of a route (private to config/): `remove` (a list
// of names), `set` and `add` (maps of name to value), each optional.
#include "config/config.hpp"
#include "config/yaml_reader.hpp"

namespace weir::config {

// Reads one block into `out`; every problem is reported at the name or value it concerns.
// `request` is true for `request_headers` (a request always has exactly one Host).
void load_header_rules(Diagnostics& d, const Field& f, bool request, HeaderRules& out);

}  // namespace weir::config
