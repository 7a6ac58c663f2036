// The admin bodies (src/admin/admin_server.*): /metrics in the Prometheus text format and
// /api/v1/backends in JSON, rendered from a snapshot built in the test and a WorkerStats filled
// by hand; and the AdminServer answering over a real loopback socket.
//
// The outputs are parsed, never compared whole, and only the metrics and fields known here are
// looked up: fields and metrics added later do not break these tests. The metrics parser is
// strict about the exposition format (escapes, one group per family, TYPE before samples), so
// a label value that is not escaped, or a family split in two, fails.
#include "admin/admin_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "config/config.hpp"
#include "mini_json.hpp"
#include "model/registry.hpp"
#include "model/snapshot.hpp"
#include "net/address.hpp"
#include "net/socket.hpp"
#include "proxy/stats.hpp"

namespace weir::admin {
namespace {

namespace json = weir::test::json;

// ---------------------------------------------------------------------------------------------
// A strict reader of the Prometheus text exposition format (version 0.0.4).

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;  // values unescaped
  double value = 0;
  std::string value_text;
  size_t line = 0;
};

struct Metrics {
  std::vector<Sample> samples;
  std::map<std::string, std::string> types;  // family → counter, gauge, histogram...
  std::vector<std::string> errors;           // format violations, "line N: why"

  // Samples named `name` whose labels include every one of `labels` (others may be present).
  std::vector<const Sample*> find(const std::string& name,
                                  const std::map<std::string, std::string>& labels = {}) const {
    std::vector<const Sample*> out;
    for (const Sample& s : samples) {
      if (s.name != name) continue;
      bool match = true;
      for (const auto& [k, v] : labels) {
        auto it = s.labels.find(k);
        if (it == s.labels.end() || it->second != v) match = false;
      }
      if (match) out.push_back(&s);
    }
    return out;
  }
  // The value of the one sample matching, or nullopt (and a test failure) if not exactly one.
  std::optional<double> value(const std::string& name,
                              const std::map<std::string, std::string>& labels = {}) const {
    auto found = find(name, labels);
    if (found.size() != 1) {
      std::string l;
      for (const auto& [k, v] : labels)
        l += k + "=" + v + " ";
      ADD_FAILURE() << found.size() << " samples of " << name << " {" << l << "}, expected 1";
      return std::nullopt;
    }
    return found[0]->value;
  }
};

bool name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
bool name_char(char c) {
  return name_start(c) || (c >= '0' && c <= '9');
}

// The family a sample belongs to: histogram series carry a suffix.
std::string family_of(const std::string& name, const std::map<std::string, std::string>& types) {
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (name.size() > suffix.size() && name.ends_with(suffix)) {
      std::string base = name.substr(0, name.size() - suffix.size());
      auto it = types.find(base);
      if (it != types.end() && (it->second == "histogram" || it->second == "summary")) return base;
    }
  }
  return name;
}

Metrics parse_metrics(std::string_view text) {
  Metrics m;
  std::set<std::string> done_families;  // families whose group has ended
  std::string current;                  // the family of the group being read
  size_t line_no = 0;
  if (!text.empty() && !text.ends_with('\n')) m.errors.push_back("no newline at the end");
  while (!text.empty()) {
    ++line_no;
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    auto error = [&](const std::string& why) {
      m.errors.push_back("line " + std::to_string(line_no) + ": " + why + ": " + std::string(line));
    };
    auto enter_family = [&](const std::string& family) {
      if (family == current) return;
      if (!current.empty()) done_families.insert(current);
      if (done_families.count(family)) error("family " + family + " is split in two groups");
      current = family;
    };
    if (line.empty()) continue;
    if (line.starts_with("#")) {
      // "# HELP name text" / "# TYPE name type"; other comments are free text.
      if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
        std::string_view rest = line.substr(7);
        size_t sp = rest.find(' ');
        std::string name(rest.substr(0, sp));
        if (name.empty() || !name_start(name[0])) error("bad metric name in a comment");
        enter_family(name);
        if (line.starts_with("# TYPE ")) {
          std::string type(sp == std::string_view::npos ? "" : rest.substr(sp + 1));
          static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary",
                                                       "untyped"};
          if (!kTypes.count(type)) error("bad type");
          if (m.types.count(name)) error("second TYPE for " + name);
          for (const Sample& s : m.samples) {
            if (family_of(s.name, {{name, type}}) == name) error("TYPE after samples of " + name);
          }
          m.types[name] = type;
        }
      }
      continue;
    }
    Sample s;
    s.line = line_no;
    size_t i = 0;
    if (!name_start(line[0])) {
      error("bad metric name");
      continue;
    }
    while (i < line.size() && name_char(line[i]))
      ++i;
    s.name = std::string(line.substr(0, i));
    bool ok = true;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (ok) {
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        size_t start = i;
        if (i >= line.size() || !name_start(line[i]) || line[i] == ':') {
          ok = false;
          break;
        }
        while (i < line.size() && name_char(line[i]) && line[i] != ':')
          ++i;
        std::string label(line.substr(start, i - start));
        if (i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') {
          ok = false;
          break;
        }
        i += 2;
        std::string value;
        for (;;) {
          if (i >= line.size()) {
            ok = false;
            break;
          }
          char c = line[i++];
          if (c == '"') break;
          if (c != '\\') {
            value.push_back(c);
            continue;
          }
          if (i >= line.size()) {
            ok = false;
            break;
          }
          char e = line[i++];
          if (e == '\\' || e == '"')
            value.push_back(e);
          else if (e == 'n')
            value.push_back('\n');
          else
            ok = false;  // the only escapes the format has
        }
        if (!ok) break;
        if (!s.labels.emplace(label, value).second) {
          ok = false;
          break;
        }
        if (i < line.size() && line[i] == ',') ++i;
      }
    }
    if (!ok) {
      error("bad label set");
      continue;
    }
    if (i >= line.size() || line[i] != ' ') {
      error("expected a space before the value");
      continue;
    }
    std::string_view rest = line.substr(i + 1);
    size_t sp = rest.find(' ');  // an optional timestamp follows
    s.value_text = std::string(rest.substr(0, sp));
    if (s.value_text == "+Inf") {
      s.value = INFINITY;
    } else if (s.value_text == "-Inf") {
      s.value = -INFINITY;
    } else if (s.value_text == "NaN") {
      s.value = NAN;
    } else {
      char* end = nullptr;
      s.value = std::strtod(s.value_text.c_str(), &end);
      if (s.value_text.empty() || *end != '\0') {
        error("bad value");
        continue;
      }
    }
    std::string family = family_of(s.name, m.types);
    if (!m.types.count(family)) error("no TYPE before the samples of " + family);
    enter_family(family);
    m.samples.push_back(std::move(s));
  }
  return m;
}

Metrics parse_ok(const std::string& text) {
  Metrics m = parse_metrics(text);
  for (const std::string& e : m.errors)
    ADD_FAILURE() << "metrics format: " << e;
  return m;
}

// ---------------------------------------------------------------------------------------------
// The model and the stats

// Names no config file may hold (the loader allows letters, digits, ".", "_", "-"), but the
// renderers must still write them safely.
const std::string kOddBackend = "odd\"name\\with\nnewline";
const std::string kOddServer = std::string("s\"1\\x\ny\tz\x01\x1f\r");
const std::string kOddListener = "li\"s\\t\nener";

struct Fixture {
  model::ServerRegistry registry;
  model::SnapshotPtr snap;
  proxy::WorkerStats stats;

  const model::ServerRuntime& server(size_t b, size_t s) const {
    return snap->backends.at(b).servers.at(s);
  }
};

config::Server make_server(std::string name, std::string host, uint16_t port, uint32_t weight) {
  config::Server s;
  s.name = std::move(name);
  s.host = std::move(host);
  s.port = port;
  s.address = s.host + ":" + std::to_string(port);
  s.weight = weight;
  return s;
}

// Backends "web" (servers a and b, weight 3) and the odd one (one odd server).
model::SnapshotPtr make_snapshot(model::ServerRegistry& registry, bool with_odd = true) {
  auto cfg = std::make_shared<config::Config>();
  cfg->workers = 1;
  config::Backend web;
  web.name = "web";
  web.servers.push_back(make_server("a", "127.0.0.1", 9001, 1));
  web.servers.push_back(make_server("b", "127.0.0.1", 9002, 3));
  cfg->backends.push_back(web);
  if (with_odd) {
    config::Backend odd;
    odd.name = kOddBackend;
    odd.servers.push_back(make_server(kOddServer, "127.0.0.1", 9003, 2));
    cfg->backends.push_back(odd);
  }
  std::vector<std::string> errors;
  model::SnapshotPtr snap = model::build_snapshot(cfg, registry, errors);
  EXPECT_TRUE(snap) << (errors.empty() ? "" : errors[0]);
  return snap;
}

// web/a: up, 3 in flight, 10 requests; web/b: down, 0 requests; odd: up but ejected, 1 in
// flight, 7 requests. Responses: main/web 200 ×5 and 502 ×2, main/(none) 404 ×1, odd/odd
// 503 ×4. Five latencies (see below). The plain counters are all different.
void fill(Fixture& f) {
  f.snap = make_snapshot(f.registry);
  ASSERT_TRUE(f.snap);
  f.server(0, 0).state->active.store(3);
  f.server(0, 1).state->up.store(false);
  f.server(1, 0).state->active.store(1);
  f.server(1, 0).state->ejected_until_ns.store(
      std::chrono::steady_clock::now().time_since_epoch().count() +
      std::chrono::nanoseconds(std::chrono::hours(1)).count());
  ASSERT_EQ(f.server(0, 0).uid, 0u);
  ASSERT_EQ(f.server(0, 1).uid, 1u);
  ASSERT_EQ(f.server(1, 0).uid, 2u);
  f.stats.server(0).requests = 10;
  f.stats.server(2).requests = 7;
  auto& web = f.stats.requests[{"main", "web"}];
  for (int i = 0; i < 5; ++i)
    web.add(200);
  web.add(502);
  web.add(502);
  f.stats.requests[{"main", ""}].add(404);
  for (int i = 0; i < 4; ++i)
    f.stats.requests[{kOddListener, kOddBackend}].add(503);
  for (double s : {0.0003, 0.001, 0.003, 0.7, 7.0})
    f.stats.latency.observe(s);
  f.stats.connections_accepted = 11;
  f.stats.connections_open = 2;
  f.stats.upstream_connects = 5;
  f.stats.upstream_reuses = 6;
  f.stats.parse_errors = 8;
  f.stats.tls_handshake_failures = 3;
  f.stats.h2_connections = 4;
  f.stats.h2_abuse = 9;
}

// ---------------------------------------------------------------------------------------------
// /metrics

class AdminRender : public ::testing::Test {
 protected:
  void SetUp() override { fill(f_); }
  Fixture f_;
};

TEST_F(AdminRender, MetricsAreWellFormedAndTyped) {
  Metrics m = parse_ok(render_metrics(*f_.snap, f_.stats));
  EXPECT_EQ(m.types["weir_requests_total"], "counter");
  EXPECT_EQ(m.types["weir_server_up"], "gauge");
  EXPECT_EQ(m.types["weir_server_active_requests"], "gauge");
  EXPECT_EQ(m.types["weir_server_requests_total"], "counter");
  EXPECT_EQ(m.types["weir_request_duration_seconds"], "histogram");
  EXPECT_EQ(m.types["weir_connections_accepted_total"], "counter");
  EXPECT_EQ(m.types["weir_connections_open"], "gauge");
  // Every sample of a family named *_total is a counter's.
  for (const auto& [family, type] : m.types) {
    if (family.ends_with("_total")) {
      EXPECT_EQ(type, "counter") << family;
    }
  }
}

TEST_F(AdminRender, RequestsTotalByListenerBackendAndCode) {
  Metrics m = parse_ok(render_metrics(*f_.snap, f_.stats));
  EXPECT_EQ(
      m.value("weir_requests_total", {{"listener", "main"}, {"backend", "web"}, {"code", "200"}}),
      5);
  EXPECT_EQ(
      m.value("weir_requests_total", {{"listener", "main"}, {"backend", "web"}, {"code", "502"}}),
      2);
  // Answered without a backend: the empty backend label.
  EXPECT_EQ(
      m.value("weir_requests_total", {{"listener", "main"}, {"backend", ""}, {"code", "404"}}), 1);
  EXPECT_EQ(m.value("weir_requests_total",
                    {{"listener", kOddListener}, {"backend", kOddBackend}, {"code", "503"}}),
            4);
  // Every sample has exactly these three labels, and no code appears twice for one pair.
  std::set<std::tuple<std::string, std::string, std::string>> keys;
  for (const Sample* s : m.find("weir_requests_total")) {
    EXPECT_EQ(s->labels.size(), 3u) << "line " << s->line;
    EXPECT_TRUE(
        keys.insert({s->labels.at("listener"), s->labels.at("backend"), s->labels.at("code")})
            .second)
        << "line " << s->line;
  }
  EXPECT_TRUE(m.find("weir_requests_total", {{"code", "500"}}).empty());
}

TEST_F(AdminRender, ServerUpFollowsRotation) {
  Metrics m = parse_ok(render_metrics(*f_.snap, f_.stats));
  EXPECT_EQ(m.value("weir_server_up", {{"backend", "web"}, {"server", "a"}}), 1);
  EXPECT_EQ(m.value("weir_server_up", {{"backend", "web"}, {"server", "b"}}), 0);  // down
  // Ejected by passive checks: out of rotation too.
  EXPECT_EQ(m.value("weir_server_up", {{"backend", kOddBackend}, {"server", kOddServer}}), 0);
  EXPECT_EQ(m.find("weir_server_up").size(), 3u);
  // The cooldown over, back in.
  f_.server(1, 0).state->ejected_until_ns.store(1);
  Metrics again = parse_ok(render_metrics(*f_.snap, f_.stats));
  EXPECT_EQ(again.value("weir_server_up", {{"backend", kOddBackend}, {"server", kOddServer}}), 1);
}

TEST_F(AdminRender, ActiveAndSentRequestsPerServer) {
  Metrics m = parse_ok(render_metrics(*f_.snap, f_.stats));
  EXPECT_EQ(m.value("weir_server_active_requests", {{"backend", "web"}, {"server", "a"}}), 3);
  EXPECT_EQ(m.value("weir_server_active_requests", {{"backend", "web"}, {"server", "b"}}), 0);
  EXPECT_EQ(
      m.value("weir_server_active_requests", {{"backend", kOddBackend}, {"server", kOddServer}}),
      1);
  EXPECT_EQ(m.value("weir_server_requests_total", {{"backend", "web"}, {"server", "a"}}), 10);
  EXPECT_EQ(m.value("weir_server_requests_total", {{"backend", "web"}, {"server", "b"}}), 0);
  EXPECT_EQ(
      m.value("weir_server_requests_total", {{"backend", kOddBackend}, {"server", kOddServer}}), 7);
}

TEST_F(AdminRender, ServersTheStatsHaveNotSeenCountZero) {
  f_.stats.servers.assign(1, {});  // the worker never sent to uid 1 or 2
  f_.stats.server(0).requests = 10;
  Metrics m = parse_ok(render_metrics(*f_.snap, f_.stats));
  EXPECT_EQ(m.value("weir_server_requests_total", {{"backend", "web"}, {"server", "a"}}), 10);
  EXPECT_EQ(m.value("weir_server_requests_total", {{"backend", "web"}, {"server", "b"}}), 0);
  EXPECT_EQ(
      m.value("weir_server_requests_total", {{"backend", kOddBackend}, {"server", kOddServer}}), 0);
}

TEST_F(AdminRender, HistogramBucketsAreCumulativeAndEndWithInf) {
  Metrics m = parse_ok(render_metrics(*f_.snap, f_.stats));
  auto buckets = m.find("weir_request_duration_seconds_bucket");
  ASSERT_EQ(buckets.size(), proxy::kLatencyBuckets.size() + 1);
  // Observed: 0.0003, 0.001 (on a bound: counts in its bucket), 0.003, 0.7, 7.
  const std::map<double, double> want = {
      {0.0005, 1}, {0.001, 2}, {0.0025, 2}, {0.005, 3}, {0.01, 3}, {0.025, 3},
      {0.05, 3},   {0.1, 3},   {0.25, 3},   {0.5, 3},   {1.0, 4},  {5.0, 4},
  };
  double prev_le = -INFINITY, prev_count = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    const Sample& s = *buckets[i];
    ASSERT_TRUE(s.labels.count("le")) << "line " << s.line;
    const std::string& le = s.labels.at("le");
    double bound = le == "+Inf" ? INFINITY : std::strtod(le.c_str(), nullptr);
    EXPECT_GT(bound, prev_le) << "bounds out of order at " << le;
    EXPECT_GE(s.value, prev_count) << "not cumulative at " << le;
    if (i < proxy::kLatencyBuckets.size()) {
      EXPECT_DOUBLE_EQ(bound, proxy::kLatencyBuckets[i]);
      auto it = want.find(proxy::kLatencyBuckets[i]);
      ASSERT_NE(it, want.end());
      EXPECT_EQ(s.value, it->second) << "le=" << le;
    } else {
      EXPECT_EQ(le, "+Inf") << "the last bucket";
    }
    prev_le = bound;
    prev_count = s.value;
  }
  EXPECT_EQ(buckets.back()->value, 5);
  EXPECT_EQ(m.value("weir_request_duration_seconds_count"), 5);
  EXPECT_EQ(m.value("weir_request_duration_seconds_bucket", {{"le", "+Inf"}}),
            m.value("weir_request_duration_seconds_count"));
  auto sum = m.value("weir_request_duration_seconds_sum");
  ASSERT_TRUE(sum);
  EXPECT_NEAR(*sum, 0.0003 + 0.001 + 0.003 + 0.7 + 7.0, 1e-9);
}

TEST_F(AdminRender, EmptyHistogramIsAllZero) {
  f_.stats.latency = {};
  Metrics m = parse_ok(render_metrics(*f_.snap, f_.stats));
  auto buckets = m.find("weir_request_duration_seconds_bucket");
  ASSERT_EQ(buckets.size(), proxy::kLatencyBuckets.size() + 1);
  for (const Sample* s : buckets)
    EXPECT_EQ(s->value, 0) << "line " << s->line;
  EXPECT_EQ(m.value("weir_request_duration_seconds_count"), 0);
  EXPECT_EQ(m.value("weir_request_duration_seconds_sum"), 0);
}

TEST_F(AdminRender, ProcessCountersAndGauges) {
  Metrics m = parse_ok(render_metrics(*f_.snap, f_.stats));
  EXPECT_EQ(m.value("weir_connections_accepted_total"), 11);
  EXPECT_EQ(m.value("weir_connections_open"), 2);
  EXPECT_EQ(m.value("weir_upstream_connects_total"), 5);
  EXPECT_EQ(m.value("weir_upstream_reuses_total"), 6);
  EXPECT_EQ(m.value("weir_bad_requests_total"), 8);
  EXPECT_EQ(m.value("weir_tls_handshake_failures_total"), 3);
  EXPECT_EQ(m.value("weir_h2_connections_total"), 4);
  EXPECT_EQ(m.value("weir_h2_abusive_connections_total"), 9);
}

TEST_F(AdminRender, LabelValuesAreEscaped) {
  std::string text = render_metrics(*f_.snap, f_.stats);
  // As written: backslash, quote and newline escaped; nothing else touched.
  EXPECT_NE(text.find(R"(backend="odd\"name\\with\nnewline")"), std::string::npos);
  EXPECT_NE(text.find(R"(listener="li\"s\\t\nener")"), std::string::npos);
  EXPECT_NE(text.find("server=\"s\\\"1\\\\x\\ny\tz\x01\x1f\r\""), std::string::npos);
  // And read back (the strict parser also fails on a raw newline splitting a sample).
  Metrics m = parse_ok(text);
  std::set<std::string> backends, servers, listeners;
  for (const Sample& s : m.samples) {
    if (s.labels.count("backend")) backends.insert(s.labels.at("backend"));
    if (s.labels.count("server")) servers.insert(s.labels.at("server"));
    if (s.labels.count("listener")) listeners.insert(s.labels.at("listener"));
  }
  EXPECT_TRUE(backends.count(kOddBackend));
  EXPECT_TRUE(servers.count(kOddServer));
  EXPECT_TRUE(listeners.count(kOddListener));
  // No stray line: every line is a comment or a sample that parsed.
  size_t lines = 0, comments = 0;
  for (size_t p = 0; p < text.size(); p = text.find('\n', p) + 1) {
    ++lines;
    if (text[p] == '#') ++comments;
  }
  EXPECT_EQ(lines, comments + m.samples.size());
}

TEST_F(AdminRender, EmptySnapshotAndStats) {
  model::ServerRegistry registry;
  auto cfg = std::make_shared<config::Config>();
  std::vector<std::string> errors;
  model::SnapshotPtr empty = model::build_snapshot(cfg, registry, errors);
  ASSERT_TRUE(empty);
  Metrics m = parse_ok(render_metrics(*empty, proxy::WorkerStats{}));
  EXPECT_TRUE(m.find("weir_server_up").empty());
  EXPECT_TRUE(m.find("weir_requests_total").empty());
  EXPECT_EQ(m.value("weir_request_duration_seconds_count"), 0);
  EXPECT_EQ(m.value("weir_connections_open"), 0);

  std::string body = render_backends_json(*empty, proxy::WorkerStats{});
  json::Parser p(body);
  auto doc = p.parse();
  ASSERT_TRUE(doc) << p.error() << "\n" << body;
  ASSERT_TRUE(doc->get("backends") && doc->get("backends")->is_array());
  EXPECT_TRUE(doc->get("backends")->as_array().empty());
}

// ---------------------------------------------------------------------------------------------
// /api/v1/backends

// The server named `name` of the backend named `backend` in a parsed document, or null.
const json::Value* json_server(const json::Value& doc, std::string_view backend,
                               std::string_view name) {
  const json::Value* backends = doc.get("backends");
  if (!backends || !backends->is_array()) return nullptr;
  for (const json::Value& b : backends->as_array()) {
    const json::Value* bn = b.get("name");
    if (!bn || !bn->is_string() || bn->as_string() != backend) continue;
    const json::Value* servers = b.get("servers");
    if (!servers || !servers->is_array()) return nullptr;
    for (const json::Value& s : servers->as_array()) {
      const json::Value* sn = s.get("name");
      if (sn && sn->is_string() && sn->as_string() == name) return &s;
    }
  }
  return nullptr;
}

std::optional<json::Value> parse_json(const std::string& body) {
  json::Parser p(body);
  auto doc = p.parse();
  EXPECT_TRUE(doc) << p.error() << "\n" << body;
  return doc;
}

// Checks one server object: the fields known today, with their types and values.
void expect_server(const json::Value* s, std::string_view address, double weight, bool healthy,
                   double active, double requests) {
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->is_object());
  const json::Value* v;
  ASSERT_TRUE((v = s->get("address")) && v->is_string());
  EXPECT_EQ(v->as_string(), address);
  ASSERT_TRUE((v = s->get("weight")) && v->is_number());
  EXPECT_EQ(v->as_number(), weight);
  ASSERT_TRUE((v = s->get("healthy")) && v->is_bool());
  EXPECT_EQ(v->as_bool(), healthy);
  ASSERT_TRUE((v = s->get("active_requests")) && v->is_number());
  EXPECT_EQ(v->as_number(), active);
  ASSERT_TRUE((v = s->get("requests_total")) && v->is_number());
  EXPECT_EQ(v->as_number(), requests);
}

TEST_F(AdminRender, BackendsJsonHasEveryServerWithItsState) {
  auto doc = parse_json(render_backends_json(*f_.snap, f_.stats));
  ASSERT_TRUE(doc);
  ASSERT_TRUE(doc->is_object());
  const json::Value* backends = doc->get("backends");
  ASSERT_TRUE(backends && backends->is_array());
  ASSERT_EQ(backends->as_array().size(), 2u);
  // In snapshot order.
  EXPECT_EQ(backends->as_array()[0].get("name")->as_string(), "web");
  EXPECT_EQ(backends->as_array()[1].get("name")->as_string(), kOddBackend);
  ASSERT_TRUE(backends->as_array()[0].get("servers")->is_array());
  EXPECT_EQ(backends->as_array()[0].get("servers")->as_array().size(), 2u);
  EXPECT_EQ(backends->as_array()[1].get("servers")->as_array().size(), 1u);

  expect_server(json_server(*doc, "web", "a"), "127.0.0.1:9001", 1, true, 3, 10);
  expect_server(json_server(*doc, "web", "b"), "127.0.0.1:9002", 3, false, 0, 0);
  expect_server(json_server(*doc, kOddBackend, kOddServer), "127.0.0.1:9003", 2, false, 1, 7);
}

TEST_F(AdminRender, BackendsJsonFollowsTheState) {
  f_.server(0, 1).state->up.store(true);
  f_.server(0, 1).state->active.store(12);
  f_.server(1, 0).state->ejected_until_ns.store(0);
  f_.stats.servers.assign(2, {});
  f_.stats.server(0).requests = 10;
  f_.stats.server(1).requests = 42;
  auto doc = parse_json(render_backends_json(*f_.snap, f_.stats));
  ASSERT_TRUE(doc);
  expect_server(json_server(*doc, "web", "b"), "127.0.0.1:9002", 3, true, 12, 42);
  expect_server(json_server(*doc, kOddBackend, kOddServer), "127.0.0.1:9003", 2, true, 1, 0);
}

TEST_F(AdminRender, BackendsJsonHasAdminStateErrorsAndLatencyPerServer) {
  f_.server(0, 1).state->admin.store(model::AdminState::Drain);
  f_.server(1, 0).state->admin.store(model::AdminState::Maint);
  auto& b = f_.stats.server(1);
  b.requests = 5;
  b.errors = 2;
  b.latency.observe(0.0007);  // second bucket (<= 1 ms)
  b.latency.observe(9.0);     // above the last bound
  auto doc = parse_json(render_backends_json(*f_.snap, f_.stats));
  ASSERT_TRUE(doc);
  EXPECT_EQ(json_server(*doc, "web", "a")->get("state")->as_string(), "ready");
  const json::Value* s = json_server(*doc, "web", "b");
  EXPECT_EQ(s->get("state")->as_string(), "drain");
  EXPECT_EQ(s->get("errors_total")->as_number(), 2);
  const auto& counts = s->get("latency_counts")->as_array();
  ASSERT_EQ(counts.size(), proxy::kLatencyBuckets.size() + 1);
  EXPECT_EQ(counts[1].as_number(), 1);
  EXPECT_EQ(counts.back().as_number(), 1);
  EXPECT_EQ(json_server(*doc, kOddBackend, kOddServer)->get("state")->as_string(), "maint");
  EXPECT_EQ(doc->get("latency_buckets")->as_array().size(), proxy::kLatencyBuckets.size());
  ASSERT_EQ(doc->get("listeners")->as_array().size(), f_.snap->listeners.size());
}

TEST_F(AdminRender, JsonEscapesQuotesBackslashesAndControlCharacters) {
  std::string body = render_backends_json(*f_.snap, f_.stats);
  // No raw control character anywhere but the final newline.
  for (size_t i = 0; i + 1 < body.size(); ++i)
    EXPECT_GE(static_cast<unsigned char>(body[i]), 0x20u) << "raw control character at " << i;
  // The strict parser reads the names back exactly (it refuses raw control characters too).
  auto doc = parse_json(body);
  ASSERT_TRUE(doc);
  const json::Value* s = json_server(*doc, kOddBackend, kOddServer);
  ASSERT_NE(s, nullptr) << body;
  EXPECT_EQ(s->get("name")->as_string(), kOddServer);
}

// ---------------------------------------------------------------------------------------------
// The AdminServer on loopback

struct HttpReply {
  int status = 0;
  std::string head;  // lower-cased
  std::string body;
};

std::string lower(std::string s) {
  for (char& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A blocking loopback client; reads give up after 5 s.
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Client() { ::close(fd_); }
  bool connected() const { return connected_; }

  std::optional<HttpReply> get(std::string_view target) {
    std::string req = "GET " + std::string(target) + " HTTP/1.1\r\nHost: admin\r\n\r\n";
    if (::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
      return std::nullopt;
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!read_more()) return std::nullopt;
    HttpReply r;
    r.head = lower(buf_.substr(0, end + 2));
    if (!r.head.starts_with("http/1.1 ")) return std::nullopt;
    r.status = std::atoi(r.head.c_str() + 9);
    size_t length = 0;
    if (auto p = r.head.find("\r\ncontent-length:"); p != std::string::npos)
      length = std::strtoull(r.head.c_str() + p + 17, nullptr, 10);
    buf_.erase(0, end + 4);
    while (buf_.size() < length)
      if (!read_more()) return std::nullopt;
    r.body = buf_.substr(0, length);
    buf_.erase(0, length);
    return r;
  }

 private:
  bool read_more() {
    char tmp[16384];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }
  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fill(f_);
    std::string err;
    auto addr = net::resolve("127.0.0.1", 0, err);
    ASSERT_TRUE(addr) << err;
    int fd = net::listen_socket(*addr, false, 16, err);
    ASSERT_GE(fd, 0) << err;
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len), 0);
    port_ = ntohs(bound.sin_port);
    current_ = f_.snap;
    admin_ = std::make_unique<AdminServer>(fd, AdminSource{[this] {
                                                             std::lock_guard lock(mu_);
                                                             ++snapshots_;
                                                             return current_;
                                                           },
                                                           [this] {
                                                             std::lock_guard lock(mu_);
                                                             ++stats_calls_;
                                                             return f_.stats;
                                                           }});
    admin_->start();
  }
  void TearDown() override {
    if (admin_) admin_->stop();
    admin_.reset();
  }

  Fixture f_;
  uint16_t port_ = 0;
  std::mutex mu_;
  model::SnapshotPtr current_;
  int snapshots_ = 0;
  int stats_calls_ = 0;
  std::unique_ptr<AdminServer> admin_;
};

TEST_F(AdminServerTest, Healthz) {
  Client c(port_);
  ASSERT_TRUE(c.connected());
  auto r = c.get("/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "ok\n");
}

TEST_F(AdminServerTest, MetricsOverTheWire) {
  Client c(port_);
  ASSERT_TRUE(c.connected());
  auto r = c.get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->head.find("\r\ncontent-type: text/plain; version=0.0.4"), std::string::npos)
      << r->head;
  Metrics m = parse_ok(r->body);
  EXPECT_EQ(m.value("weir_server_up", {{"backend", "web"}, {"server", "a"}}), 1);
  EXPECT_EQ(
      m.value("weir_requests_total", {{"listener", "main"}, {"backend", "web"}, {"code", "200"}}),
      5);
  EXPECT_EQ(r->body, render_metrics(*f_.snap, f_.stats));
  std::lock_guard lock(mu_);
  EXPECT_EQ(snapshots_, 1);
  EXPECT_EQ(stats_calls_, 1);
}

TEST_F(AdminServerTest, BackendsOverTheWire) {
  Client c(port_);
  ASSERT_TRUE(c.connected());
  auto r = c.get("/api/v1/backends");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->head.find("\r\ncontent-type: application/json"), std::string::npos) << r->head;
  auto doc = parse_json(r->body);
  ASSERT_TRUE(doc);
  expect_server(json_server(*doc, "web", "a"), "127.0.0.1:9001", 1, true, 3, 10);
}

TEST_F(AdminServerTest, UnknownPathsAre404AndTheQueryIsIgnored) {
  Client c(port_);
  ASSERT_TRUE(c.connected());
  for (std::string_view path :
       {"/index.html", "/metricsx", "/api/v1/backend", "/healthz/", "/api/v1"}) {
    auto r = c.get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 404) << path;
  }
  auto r = c.get("/healthz?verbose=1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "ok\n");
}

TEST_F(AdminServerTest, EachRequestReadsTheCurrentSnapshot) {
  Client c(port_);
  ASSERT_TRUE(c.connected());
  auto r1 = c.get("/api/v1/backends");  // keep-alive: the same connection throughout
  ASSERT_TRUE(r1);
  auto d1 = parse_json(r1->body);
  ASSERT_TRUE(d1);
  EXPECT_EQ(d1->get("backends")->as_array().size(), 2u);
  {
    std::lock_guard lock(mu_);
    current_ = make_snapshot(f_.registry, false);  // a reload dropped the odd backend
  }
  auto r2 = c.get("/api/v1/backends");
  ASSERT_TRUE(r2);
  auto d2 = parse_json(r2->body);
  ASSERT_TRUE(d2);
  EXPECT_EQ(d2->get("backends")->as_array().size(), 1u);
  // Same servers, same state (the registry kept it): a still has 3 in flight.
  expect_server(json_server(*d2, "web", "a"), "127.0.0.1:9001", 1, true, 3, 10);
  auto r3 = c.get("/metrics");
  ASSERT_TRUE(r3);
  Metrics m = parse_ok(r3->body);
  EXPECT_TRUE(m.find("weir_server_up", {{"backend", kOddBackend}}).empty());
  EXPECT_EQ(m.find("weir_server_up").size(), 2u);
}

}  // namespace
}  // namespace weir::admin
