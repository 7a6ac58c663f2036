// The admin listener's write endpoints: server state and weight, cache purge. Every one checks
// the bearer token of admin.token_file first (ops.md "Runtime API").
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "admin/admin_server.hpp"
#include "cache/store.hpp"
#include "core/log.hpp"
#include "http/chars.hpp"

namespace weir::admin {
namespace {

server::Response json_error(uint16_t status, std::string_view message) {
  server::Response resp;
  resp.status = status;
  resp.headers.emplace_back("Content-Type", "application/json");
  resp.body = fmt::format("{{\"error\":\"{}\"}}\n", escape_json(message));
  return resp;
}

// Equal digests of equal length: the comparison takes the same time whatever the token sent,
// its length included.
bool token_matches(std::string_view sent, const std::string& token) {
  unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(sent.data()), sent.size(), a);
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), b);
  return CRYPTO_memcmp(a, b, sizeof a) == 0;
}

// Empty optional: allowed. Otherwise the answer to send (404 API off, 401 bad token).
std::optional<server::Response> check_token(const model::Snapshot& snap, const server::Request& r) {
  const std::string& token = snap.config->admin.token;
  if (token.empty()) return json_error(404, "the runtime API is off: set admin.token_file");
  std::string_view auth = r.header("authorization");
  constexpr std::string_view kBearer = "bearer ";
  bool ok = auth.size() > kBearer.size();
  for (size_t i = 0; ok && i < kBearer.size(); ++i)
    ok = std::tolower(static_cast<unsigned char>(auth[i])) == kBearer[i];
  if (ok) {
    auth.remove_prefix(kBearer.size());
    while (!auth.empty() && auth.front() == ' ')
      auth.remove_prefix(1);
  }
  if (!ok || !token_matches(auth, token)) {
    auto resp = json_error(401, "a valid \"Authorization: Bearer <token>\" is needed");
    resp.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"weir\"");
    return resp;
  }
  return std::nullopt;
}

// A path segment with its %XX escapes decoded; nullopt if one is malformed.
std::optional<std::string> decode_segment(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = http::chars::hex_digit(s[i + 1]), lo = http::chars::hex_digit(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

}  // namespace

server::Response set_server(const model::Snapshot& snap, const server::Request& r,
                            const AdminSource& source) {
  // /api/v1/backends/{backend}/servers/{server}
  std::string_view rest = r.path;
  rest.remove_prefix(std::string_view("/api/v1/backends/").size());
  size_t mid = rest.find("/servers/");
  if (mid == std::string_view::npos || mid == 0 ||
      rest.substr(mid + 9).find('/') != std::string_view::npos || rest.size() == mid + 9)
    return json_error(404, "not found: use /api/v1/backends/{backend}/servers/{server}");
  if (r.method != "POST" && r.method != "GET") {
    auto resp = json_error(405, "use GET or POST");
    resp.headers.emplace_back("Allow", "GET, POST");
    return resp;
  }
  if (r.method == "POST") {
    if (auto denied = check_token(snap, r)) return *denied;
  }
  auto backend = decode_segment(rest.substr(0, mid));
  auto server = decode_segment(rest.substr(mid + 9));
  if (!backend || !server) return json_error(400, "bad percent-escape in the path");
  const model::BackendRuntime* b = nullptr;
  for (const auto& br : snap.backends)
    if (br.cfg->name == *backend) b = &br;
  if (!b) return json_error(404, fmt::format("no backend named \"{}\"", *backend));
  const model::ServerRuntime* s = nullptr;
  for (const auto& sr : b->servers)
    if (sr.name == *server) s = &sr;
  if (!s)
    return json_error(404,
                      fmt::format("backend \"{}\" has no server named \"{}\"", *backend, *server));
  auto snapshot_server = [&](const model::Snapshot& now) -> const model::ServerRuntime* {
    for (const auto& br : now.backends)
      if (br.cfg->name == *backend)
        for (const auto& sr : br.servers)
          if (sr.name == *server) return &sr;
    return nullptr;
  };
  server::Response resp;
  resp.headers.emplace_back("Content-Type", "application/json");
  if (r.method == "GET") {
    resp.body = render_server_json(*s, source.stats()) + "\n";
    return resp;
  }
  nlohmann::json body = nlohmann::json::parse(r.body, nullptr, false);
  if (r.body_length > r.body.size() || body.is_discarded() || !body.is_object() || body.empty())
    return json_error(400,
                      "the body must be a JSON object: {\"state\": \"ready\" | \"drain\" | "
                      "\"maint\", \"weight\": N} (either key)");
  std::optional<model::AdminState> state;
  std::optional<int64_t> weight;
  for (const auto& [key, value] : body.items()) {
    if (key == "state") {
      const std::string* v = value.is_string() ? &value.get_ref<const std::string&>() : nullptr;
      if (v && *v == "ready") {
        state = model::AdminState::Ready;
      } else if (v && *v == "drain") {
        state = model::AdminState::Drain;
      } else if (v && *v == "maint") {
        state = model::AdminState::Maint;
      } else {
        return json_error(400, "\"state\" must be \"ready\", \"drain\" or \"maint\"");
      }
    } else if (key == "weight") {
      if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > 1000)
        return json_error(400, "\"weight\" must be an integer from 0 to 1000");
      weight = value.get<int64_t>();
    } else {
      return json_error(400, fmt::format("unknown key \"{}\" (expected state, weight)", key));
    }
  }
  model::ServerState& st = *s->state;
  if (state) {
    auto old = st.admin.exchange(*state, std::memory_order_relaxed);
    if (old != *state)
      log::info("admin: server {}/{} set to {} (was {})", *backend, *server,
                model::admin_state_name(*state), model::admin_state_name(old));
  }
  model::SnapshotPtr now;
  if (weight && static_cast<int64_t>(s->weight) != *weight) {
    st.weight_override.store(*weight);
    log::info("admin: server {}/{} weight {} (was {})", *backend, *server, *weight, s->weight);
    if (!source.rebuild || !source.rebuild("admin: weight")) {
      return json_error(500, "the new weight could not be applied (see the log)");
    }
    now = source.snapshot();
  } else if (weight) {
    st.weight_override.store(*weight);
  }
  const model::ServerRuntime* shown = now ? snapshot_server(*now) : s;
  if (!shown) return json_error(404, "the server left the configuration meanwhile");
  resp.body = render_server_json(*shown, source.stats()) + "\n";
  return resp;
}

// POST /api/v1/caches/{name}/purge with {"path": "/a.css"} or {"prefix": "/assets/"}.
server::Response purge_cache(const model::Snapshot& snap, const server::Request& r) {
  if (auto denied = check_token(snap, r)) return *denied;
  server::Response resp;
  resp.headers.emplace_back("Content-Type", "application/json");
  constexpr std::string_view kPrefix = "/api/v1/caches/", kSuffix = "/purge";
  std::string_view name = r.path;
  name.remove_prefix(kPrefix.size());
  name.remove_suffix(kSuffix.size());
  auto error = [&](uint16_t status, std::string_view message) {
    resp.status = status;
    resp.body = fmt::format("{{\"error\":\"{}\"}}\n", escape_json(message));
    return resp;
  };
  if (r.method != "POST") {
    resp.headers.emplace_back("Allow", "POST");
    return error(405, "use POST");
  }
  cache::Store* store = nullptr;
  for (size_t i = 0; i < snap.config->caches.size(); ++i)
    if (snap.config->caches[i].name == name) store = snap.caches[i].get();
  if (!store) return error(404, fmt::format("no cache named \"{}\"", name));
  nlohmann::json body = nlohmann::json::parse(r.body, nullptr, false);
  if (body.is_discarded() || !body.is_object() || body.size() != 1)
    return error(400, "the body must be {\"path\": \"/a.css\"} or {\"prefix\": \"/assets/\"}");
  size_t purged = 0;
  if (auto p = body.find("path");
      p != body.end() && p->is_string() && p->get_ref<const std::string&>().starts_with("/")) {
    purged = store->purge_path(p->get_ref<const std::string&>());
  } else if (auto x = body.find("prefix"); x != body.end() && x->is_string() &&
                                           x->get_ref<const std::string&>().starts_with("/")) {
    purged = store->purge_prefix(x->get_ref<const std::string&>());
  } else {
    return error(400, "\"path\" or \"prefix\" must be a string starting with /");
  }
  resp.body = fmt::format("{{\"purged\":{}}}\n", purged);
  return resp;
}

}  // namespace weir::admin
