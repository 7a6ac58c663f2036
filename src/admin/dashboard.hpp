#pragma once
// The admin dashboard: one self-contained HTML page (inline CSS and JS, no external assets) that
// polls /api/v1/backends and drives POST /api/v1/backends/{b}/servers/{s}. Its source is
// src/admin/dashboard.html; CMake embeds it in a generated source at build time.
#include <string_view>

namespace weir::admin {

// The page, UTF-8, served as text/html; charset=utf-8 by the admin listener's GET /.
std::string_view dashboard_html();

}  // namespace weir::admin
