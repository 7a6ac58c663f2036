#include "proxy/access_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../admin/mini_json.hpp"

namespace weir::proxy {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// 2026-11-30T16:04:43.123Z
constexpr int64_t kTime = 1796054683123;

AccessRecord full_record() {
  AccessRecord r;
  r.time_unix_ms = kTime;
  r.listener = "web";
  r.client = "203.0.113.7:51234";
  r.method = "GET";
  r.host = "example.com";
  r.path = "/api/items?id=7&x=y";
  r.proto = "HTTP/1.1";
  r.status = 200;
  r.bytes_in = 312;
  r.bytes_out = 5120;
  r.duration_ms = 12.3456;
  r.backend = "api";
  r.server = "api-1";
  r.upstream_ms = 10.5;
  r.retries = 1;
  r.request_id = "4bf92f3577b34da6";
  r.tls = "TLSv1.3";
  r.termination = Termination::Ok;
  r.user_agent = "curl/8.5.0";
  r.referer = "https://example.com/";
  r.user = "alice";
  return r;
}

std::string json(const AccessRecord& r) {
  std::string s;
  format_json(r, s);
  return s;
}

std::string combined(const AccessRecord& r) {
  std::string s;
  format_combined(r, s);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Formats

TEST(AccessLogFormat, JsonGolden) {
  EXPECT_EQ(
      json(full_record()),
      R"({"time":"2026-11-30T16:04:43.123Z","listener":"web","client":"203.0.113.7:51234",)"
      R"("method":"GET","host":"example.com","path":"/api/items?id=7&x=y","proto":"HTTP/1.1",)"
      R"("status":200,"bytes_in":312,"bytes_out":5120,"duration_ms":12.346,"backend":"api",)"
      R"("server":"api-1","upstream_ms":10.5,"retries":1,"request_id":"4bf92f3577b34da6",)"
      R"("tls":"TLSv1.3","termination":"ok"})"
      "\n");
}

TEST(AccessLogFormat, FormatsAppend) {
  std::string one = json(full_record()), two = "x";
  format_json(full_record(), two);
  format_combined(full_record(), two);
  format_line(LogFormat::Json, full_record(), two);
  EXPECT_EQ(two, "x" + one + combined(full_record()) + one);
}

TEST(AccessLogFormat, JsonNulls) {
  AccessRecord r;
  r.time_unix_ms = 0;
  r.listener = "tcp-in";
  r.client = "[2001:db8::1]:4000";
  r.proto = "tcp";
  r.duration_ms = 3;
  r.termination = Termination::NoServer;
  EXPECT_EQ(
      json(r),
      R"({"time":"1970-01-01T00:00:00.000Z","listener":"tcp-in","client":"[2001:db8::1]:4000",)"
      R"("method":"","host":"","path":"","proto":"tcp","status":0,"bytes_in":0,"bytes_out":0,)"
      R"("duration_ms":3,"backend":null,"server":null,"upstream_ms":null,"retries":0,)"
      R"("request_id":null,"tls":null,"termination":"no_server"})"
      "\n");
}

TEST(AccessLogFormat, CombinedGolden) {
  EXPECT_EQ(
      combined(full_record()),
      R"(203.0.113.7 - alice [30/Nov/2026:16:04:43 +0000] "GET /api/items?id=7&x=y HTTP/1.1" )"
      R"(200 5120 "https://example.com/" "curl/8.5.0")"
      "\n");
  AccessRecord r;
  r.time_unix_ms = kTime;
  r.client = "[2001:db8::1]:4000";
  r.proto = "tcp";
  EXPECT_EQ(combined(r), R"(2001:db8::1 - - [30/Nov/2026:16:04:43 +0000] "- - tcp" 0 0 "-" "-")"
                         "\n");
}

TEST(AccessLogFormat, TimeAcrossSecondsAndCalendar) {
  AccessRecord r;
  auto time_of = [&](int64_t ms) {
    r.time_unix_ms = ms;
    std::string line = json(r);
    return line.substr(9, 24);  // {"time":"…"
  };
  EXPECT_EQ(time_of(kTime), "2026-11-30T16:04:43.123Z");
  EXPECT_EQ(time_of(kTime + 1), "2026-11-30T16:04:43.124Z");    // same second, cached prefix
  EXPECT_EQ(time_of(kTime + 877), "2026-11-30T16:04:44.000Z");  // next second
  EXPECT_EQ(time_of(kTime - 124), "2026-11-30T16:04:42.999Z");
  EXPECT_EQ(time_of(1709251199999), "2024-02-29T23:59:59.999Z");  // leap day
  EXPECT_EQ(time_of(1709251200000), "2024-03-01T00:00:00.000Z");
  EXPECT_EQ(time_of(951782400000), "2000-02-29T00:00:00.000Z");
  EXPECT_EQ(time_of(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(time_of(4102444800000), "2100-01-01T00:00:00.000Z");
  r.time_unix_ms = 1709251199999;
  EXPECT_NE(combined(r).find("[29/Feb/2024:23:59:59 +0000]"), std::string::npos);
  r.time_unix_ms = 1704067200000;
  EXPECT_NE(combined(r).find("[01/Jan/2024:00:00:00 +0000]"), std::string::npos);
}

TEST(AccessLogFormat, DurationsHaveAtMostThreeDecimals) {
  AccessRecord r;
  auto dur = [&](double ms) {
    r.duration_ms = ms;
    std::string line = json(r);
    size_t at = line.find("\"duration_ms\":") + 14;
    return line.substr(at, line.find(',', at) - at);
  };
  EXPECT_EQ(dur(12.5), "12.5");
  EXPECT_EQ(dur(3), "3");
  EXPECT_EQ(dur(0), "0");
  EXPECT_EQ(dur(0.0004), "0");
  EXPECT_EQ(dur(0.004), "0.004");
  EXPECT_EQ(dur(1.23456), "1.235");
  EXPECT_EQ(dur(0.1), "0.1");
  EXPECT_EQ(dur(59999.9999), "60000");
  EXPECT_EQ(dur(-4), "0");
  EXPECT_EQ(dur(std::numeric_limits<double>::quiet_NaN()), "0");
  EXPECT_EQ(dur(std::numeric_limits<double>::infinity()), "0");
  r.upstream_ms = std::numeric_limits<double>::quiet_NaN();
  EXPECT_NE(json(r).find("\"upstream_ms\":null"), std::string::npos);
  r.upstream_ms = 0;
  EXPECT_NE(json(r).find("\"upstream_ms\":0,"), std::string::npos);
}

TEST(AccessLogFormat, TerminationNames) {
  const std::pair<Termination, std::string_view> names[] = {
      {Termination::Ok, "ok"},
      {Termination::ClientClosed, "client_closed"},
      {Termination::ClientTimeout, "client_timeout"},
      {Termination::UpstreamRefused, "upstream_refused"},
      {Termination::UpstreamTimeout, "upstream_timeout"},
      {Termination::UpstreamReset, "upstream_reset"},
      {Termination::NoServer, "no_server"},
      {Termination::QueueFull, "queue_full"},
      {Termination::QueueTimeout, "queue_timeout"},
      {Termination::Denied, "denied"},
      {Termination::RateLimited, "rate_limited"},
      {Termination::BadRequest, "bad_request"},
      {Termination::Local, "local"},
  };
  for (auto [t, name] : names) {
    EXPECT_EQ(to_string(t), name);
    AccessRecord r;
    r.termination = t;
    EXPECT_NE(json(r).find(fmt::format("\"termination\":\"{}\"}}\n", name)), std::string::npos);
  }
}

// Strict UTF-8 (RFC 3629): the JSON parser of the tests copies raw bytes through unchecked.
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 2, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 3, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n;
  }
  return true;
}

// What a JSON reader gets back for a field: valid UTF-8 as it is, each other byte >= 0x80 as
// the character U+00XX (documented in access_log.hpp).
std::string expected_decoded(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    // The valid sequences used by the test: é (2), € (3), 😀 (4).
    for (std::string_view seq : {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"}) {
      if (s.substr(i, seq.size()) == seq) {
        out.append(seq);
        i += seq.size();
        goto next;
      }
    }
    if (c >= 0x80) {
      out.push_back(static_cast<char>(0xc0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    } else {
      out.push_back(static_cast<char>(c));
    }
    ++i;
  next:;
  }
  return out;
}

const std::string kHostile = std::string(
                                 "Mozilla\n{\"forged\":1}\r\"quoted\" back\\slash \x1b[31mred "
                                 "del\x7f tab\t bell\x07 nul") +
                             '\0' +
                             " é € 😀 bad:\xff\xfe lone-cont:\x80 overlong:\xc0\xaf "
                             "surrogate:\xed\xa0\x80 cut:\xe2\x82 end";

TEST(AccessLogFormat, JsonEscapingOneParseableLine) {
  AccessRecord r = full_record();
  r.path = kHostile;
  r.host = kHostile;
  r.request_id = kHostile;  // a client's own X-Request-ID is passed on, so logged escaped
  r.user_agent = kHostile;
  std::string line = json(r);
  ASSERT_EQ(line.find('\n'), line.size() - 1) << line;
  ASSERT_EQ(line.find('\r'), std::string::npos);
  for (char c : line.substr(0, line.size() - 1))
    ASSERT_TRUE(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) << int(c);
  EXPECT_TRUE(valid_utf8(line));
  test::json::Parser parser(line);
  auto doc = parser.parse();
  ASSERT_TRUE(doc) << parser.error() << "\n" << line;
  ASSERT_TRUE(doc->is_object());
  EXPECT_EQ(doc->get("path")->as_string(), expected_decoded(kHostile));
  EXPECT_EQ(doc->get("host")->as_string(), expected_decoded(kHostile));
  EXPECT_EQ(doc->get("request_id")->as_string(), expected_decoded(kHostile));
  EXPECT_EQ(doc->get("listener")->as_string(), "web");
  EXPECT_EQ(doc->get("status")->number_text, "200");
  EXPECT_EQ(doc->as_object().size(), 18u);
  // Valid UTF-8 is written as it is; invalid bytes as \u00XX.
  EXPECT_NE(line.find("é € 😀"), std::string::npos);
  EXPECT_NE(line.find(R"(bad:\u00ff\u00fe lone-cont:\u0080 overlong:\u00c0\u00af )"
                      R"(surrogate:\u00ed\u00a0\u0080 cut:\u00e2\u0082 end)"),
            std::string::npos);
  EXPECT_NE(line.find(R"(Mozilla\n{\"forged\":1}\r\"quoted\" back\\slash \u001b[31mred del\u007f)"
                      R"( tab\t bell\u0007 nul\u0000 )"),
            std::string::npos);
}

TEST(AccessLogFormat, JsonEscapingEveryByte) {
  // Every single byte, alone: one line, a strict parser reads it, the byte comes back (as U+00XX
  // when it is not UTF-8 on its own).
  for (int b = 0; b < 256; ++b) {
    std::string field(1, static_cast<char>(b));
    AccessRecord r;
    r.user_agent = field;
    r.path = field;
    std::string line = json(r);
    ASSERT_EQ(line.find('\n'), line.size() - 1) << b;
    ASSERT_TRUE(valid_utf8(line)) << b;
    test::json::Parser parser(line);
    auto doc = parser.parse();
    ASSERT_TRUE(doc) << b << ": " << parser.error();
    EXPECT_EQ(doc->get("path")->as_string(), expected_decoded(field)) << b;
  }
}

TEST(AccessLogFormat, CombinedEscaping) {
  AccessRecord r = full_record();
  r.user_agent = kHostile;
  r.path = "/a b\"c";
  r.user = "x\ny";
  std::string line = combined(r);
  ASSERT_EQ(line.find('\n'), line.size() - 1) << line;
  EXPECT_EQ(
      line,
      R"(203.0.113.7 - x\x0Ay [30/Nov/2026:16:04:43 +0000] "GET /a b\x22c HTTP/1.1" 200 5120 )"
      R"("https://example.com/" "Mozilla\x0A{\x22forged\x22:1}\x0D\x22quoted\x22 back\x5Cslash )"
      R"(\x1B[31mred del\x7F tab\x09 bell\x07 nul\x00 \xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 )"
      R"(bad:\xFF\xFE lone-cont:\x80 overlong:\xC0\xAF surrogate:\xED\xA0\x80 cut:\xE2\x82 end")"
      "\n");
}

// Byte-at-a-time references for the escaping rules, to check the word-at-a-time code against.
std::string reference_json(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (c >= 0x80 && n > 1 && i + n <= s.size() && valid_utf8(s.substr(i, n))) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    ++i;
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\b') {
      out += "\\b";
    } else if (c == '\f') {
      out += "\\f";
    } else if (c < 0x20 || c >= 0x7f) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

std::string reference_combined(std::string_view s) {
  if (s.empty()) return "-";
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      out += fmt::format("\\x{:02X}", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

TEST(AccessLogFormat, EscapingMatchesByteAtATimeReference) {
  // Random strings of every length up to 80 from plain text sprinkled with bytes to escape and
  // (in)valid UTF-8: the 8-byte fast path, its tail and every boundary get exercised.
  const std::vector<std::string> pieces = {"a",
                                           "b",
                                           "Z",
                                           "0",
                                           "/",
                                           " ",
                                           "~",
                                           "\"",
                                           "\\",
                                           "\n",
                                           std::string(1, '\0'),
                                           "\x1f",
                                           "\x7f",
                                           "\x80",
                                           "\xff",
                                           "\xc3\xa9",
                                           "\xe2\x82\xac",
                                           "\xf0\x9f\x98\x80",
                                           "\xc3",
                                           "\xed\xa0\x80"};
  std::mt19937 rng(12345);
  for (int round = 0; round < 20000; ++round) {
    std::string s;
    size_t len = rng() % 81;
    bool mostly_plain = round % 2 == 0;
    while (s.size() < len)
      s += mostly_plain && rng() % 16 ? std::string(1, static_cast<char>('a' + rng() % 26))
                                      : pieces[rng() % pieces.size()];
    AccessRecord r;
    r.path = s;
    r.user_agent = s;
    std::string line = json(r);
    size_t from = line.find("\"path\":\"") + 8;
    size_t to = line.find("\",\"proto\":");
    ASSERT_EQ(line.substr(from, to - from), reference_json(s)) << round;
    r.referer = "REF";  // escaped text holds no '"': this marks where the User-Agent starts
    line = combined(r);
    from = line.find("\"REF\" \"") + 7;
    ASSERT_EQ(line.substr(from, line.size() - 2 - from), reference_combined(s)) << round;
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

class AccessLogWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("weir-access-log-{}-{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(std::string_view name) const { return (dir_ / name).string(); }

  static std::vector<std::string> lines_of(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string all = ss.str();
    std::vector<std::string> out;
    size_t start = 0;
    while (start < all.size()) {
      size_t nl = all.find('\n', start);
      if (nl == std::string::npos) {
        out.push_back(all.substr(start) + "<no newline>");
        break;
      }
      out.push_back(all.substr(start, nl - start));
      start = nl + 1;
    }
    return out;
  }

  static int dest(AccessLogWriter& w, const std::string& p) {
    std::string error;
    int id = w.destination(p, error);
    EXPECT_GE(id, 0) << error;
    return id;
  }

  fs::path dir_;
};

// The CPU time this process uses while the test thread sleeps for `wall`.
std::chrono::nanoseconds cpu_used_over(std::chrono::milliseconds wall) {
  auto cpu = [] {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
  };
  auto before = cpu();
  std::this_thread::sleep_for(wall);
  return cpu() - before;
}

// "t<thread> <seq> <padding of a varying length>": every line checkable on its own.
std::string numbered(size_t thread, size_t seq) {
  return fmt::format("t{} {} {}\n", thread, seq, std::string(seq * 7 % 181, 'a' + thread % 26));
}

struct Numbered {
  size_t thread = 0, seq = 0;
};

bool parse_numbered(const std::string& line, Numbered& n) {
  unsigned long t, s;
  int used = 0;
  if (std::sscanf(line.c_str(), "t%lu %lu %n", &t, &s, &used) != 2) return false;
  if (line.substr(used) != std::string(s * 7 % 181, 'a' + t % 26)) return false;
  n = {t, s};
  return true;
}

TEST_F(AccessLogWriterTest, ManyWorkersEveryLineOnceIntactInOrder) {
  constexpr size_t kWorkers = 4, kLines = 20000;
  // A small ring and a short tick: the writer falls behind now and then, wraps the ring often.
  AccessLogWriter::Options o;
  o.worker_buffer_bytes = 16 << 10;
  o.flush_interval = 5ms;
  o.stage_bytes = 8 << 10;
  AccessLogWriter w(kWorkers, o);
  int id = dest(w, path("access.log"));
  std::vector<std::thread> threads;
  std::atomic<uint64_t> refused{0};
  for (size_t t = 0; t < kWorkers; ++t) {
    threads.emplace_back([&, t] {
      AccessLogProducer& p = w.producer(t);
      for (size_t i = 0; i < kLines; ++i) {
        std::string line = numbered(t, i);
        while (!p.submit(id, line)) {  // full: this test wants every line, so it retries
          refused.fetch_add(1);
          std::this_thread::yield();
        }
      }
    });
  }
  for (auto& th : threads)
    th.join();
  w.flush_for_tests();
  EXPECT_EQ(w.written(), kWorkers * kLines);
  EXPECT_EQ(w.dropped(), refused.load());  // every refusal counted, nothing else lost

  auto lines = lines_of(path("access.log"));
  ASSERT_EQ(lines.size(), kWorkers * kLines);
  std::vector<size_t> next(kWorkers, 0);
  for (const auto& line : lines) {
    Numbered n;
    ASSERT_TRUE(parse_numbered(line, n)) << "broken line: " << line;
    ASSERT_LT(n.thread, kWorkers);
    ASSERT_EQ(n.seq, next[n.thread]) << "out of order or repeated: " << line;
    ++next[n.thread];
  }
}

TEST_F(AccessLogWriterTest, SeveralDestinationsFromSeveralWorkers) {
  AccessLogWriter::Options o;
  o.flush_interval = 5ms;
  AccessLogWriter w(2, o);
  int a = dest(w, path("a.log"));
  int b = dest(w, path("b.log"));
  EXPECT_NE(a, b);
  EXPECT_EQ(dest(w, path("a.log")), a);  // the same path, the same id
  std::thread t0([&] {
    for (size_t i = 0; i < 1000; ++i)
      ASSERT_TRUE(w.submit(0, i % 2 ? a : b, numbered(0, i)));
  });
  std::thread t1([&] {
    for (size_t i = 0; i < 1000; ++i)
      ASSERT_TRUE(w.submit(1, a, numbered(1, i)));
  });
  t0.join();
  t1.join();
  w.flush_for_tests();
  EXPECT_EQ(w.written(), 2000u);
  EXPECT_EQ(w.dropped(), 0u);
  auto la = lines_of(path("a.log"));
  auto lb = lines_of(path("b.log"));
  ASSERT_EQ(la.size(), 1500u);
  ASSERT_EQ(lb.size(), 500u);
  size_t next0 = 1, next1 = 0;
  for (const auto& line : la) {
    Numbered n;
    ASSERT_TRUE(parse_numbered(line, n)) << line;
    if (n.thread == 0) {
      ASSERT_EQ(n.seq, next0);
      next0 += 2;
    } else {
      ASSERT_EQ(n.seq, next1++);
    }
  }
  for (size_t i = 0; i < lb.size(); ++i)
    EXPECT_EQ(lb[i] + "\n", numbered(0, 2 * i));
}

// A writer thread that takes nothing: the worker's ring fills, then every line is dropped and
// counted, and submit() returns at once all along.
TEST_F(AccessLogWriterTest, StalledWriterNeverBlocksAndCountsDropsExactly) {
  std::mutex mu;
  std::condition_variable cv;
  bool stalled = true;
  AccessLogWriter::Options o;
  o.worker_buffer_bytes = 4096;
  o.flush_interval = 1ms;
  o.before_pass = [&] {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return !stalled; });
  };
  AccessLogWriter w(1, o);
  int id = dest(w, path("access.log"));
  AccessLogProducer& p = w.producer(0);
  const std::string line(99, 'x');  // 100 bytes with its '\n': 112 in the ring
  constexpr size_t kSubmitted = 5000;
  size_t accepted = 0, refused = 0;
  auto slowest = std::chrono::nanoseconds::zero();
  auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < kSubmitted; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    bool ok = p.submit(id, line);
    slowest = std::max(slowest, std::chrono::steady_clock::now() - t0);
    (ok ? accepted : refused)++;
  }
  auto total = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(accepted, 4096u / 112);  // the ring holds exactly this many
  EXPECT_EQ(refused, kSubmitted - accepted);
  EXPECT_EQ(w.dropped(), refused);
  EXPECT_EQ(p.dropped(), refused);
  EXPECT_LT(total, 2s) << "submit() waited for the stalled writer";
  EXPECT_LT(slowest, 500ms);
  {
    std::lock_guard lock(mu);
    stalled = false;
  }
  cv.notify_all();
  w.flush_for_tests();
  EXPECT_EQ(w.written(), accepted);
  EXPECT_EQ(w.written() + w.dropped(), kSubmitted);
  auto lines = lines_of(path("access.log"));
  ASSERT_EQ(lines.size(), accepted);
  for (const auto& l : lines)
    EXPECT_EQ(l, line);
  // The ring has room again.
  EXPECT_TRUE(p.submit(id, line));
  w.flush_for_tests();
  EXPECT_EQ(w.written(), accepted + 1);
}

// A FIFO nobody reads: the writer itself never blocks on it (the line batch for it fills and
// further lines are dropped), workers never block; once a reader comes, what was kept arrives
// intact and written + dropped == submitted.
TEST_F(AccessLogWriterTest, PipeNobodyReadsDropsCountedThenDrains) {
  std::string fifo = path("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  int rfd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(rfd, 0);
  AccessLogWriter::Options o;
  o.worker_buffer_bytes = 16 << 10;
  o.stage_bytes = 4096;
  o.flush_interval = 2ms;
  auto w = std::make_unique<AccessLogWriter>(2, o);
  int id = dest(*w, fifo);
  int file = dest(*w, path("other.log"));  // a stalled pipe does not hold up a file
  AccessLogProducer& p = w->producer(0);
  constexpr size_t kSubmitted = 20000;  // ~2 MB: far more than the pipe (64 KiB) holds
  auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < kSubmitted; ++i) {
    p.submit(id, numbered(0, i));
    if (i % 100 == 0) std::this_thread::sleep_for(50us);  // let the writer run now and then
  }
  // Another worker logs to a file meanwhile: the stalled pipe does not hold it up.
  for (size_t i = 0; i < 30; ++i)
    ASSERT_TRUE(w->submit(1, file, numbered(1, i)));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  // The file gets its lines although the pipe takes nothing.
  for (int tries = 0; tries < 500 && lines_of(path("other.log")).size() < 30; ++tries)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(lines_of(path("other.log")).size(), 30u);
  EXPECT_GT(w->dropped(), 0u);
  EXPECT_LT(cpu_used_over(300ms), 150ms) << "the writer spins on a full pipe";

  // A reader drains the pipe until the writer closes it.
  ASSERT_EQ(::fcntl(rfd, F_SETFL, 0), 0);
  std::string got;
  std::thread reader([&] {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(rfd, buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
  });
  w->flush_for_tests();
  uint64_t written = w->written(), dropped = w->dropped();
  EXPECT_EQ(written + dropped, kSubmitted + 30);
  w.reset();  // closes the pipe: the reader sees its end
  reader.join();
  ::close(rfd);
  size_t lines = 0, last = 0;
  std::istringstream in(got);
  for (std::string line; std::getline(in, line); ++lines) {
    Numbered n;
    ASSERT_TRUE(parse_numbered(line, n)) << "broken line: " << line;
    if (lines > 0) {
      ASSERT_GT(n.seq, last);
    }
    last = n.seq;
  }
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), '\n');
  EXPECT_EQ(lines + 30, written);
}

// stdout as a blocking pipe nobody reads (weir | a stuck consumer): fd 1 is shared, so weir
// cannot make it non-blocking; the writer polls before each write and writes at most PIPE_BUF,
// so it never blocks in write(2) and keeps serving the other destinations.
TEST_F(AccessLogWriterTest, StdoutPipeNobodyReadsDoesNotBlockTheWriter) {
  int pfd[2];
  ASSERT_EQ(::pipe(pfd), 0);
  std::fflush(stdout);
  int saved_stdout = ::dup(1);
  ASSERT_GE(saved_stdout, 0);
  ASSERT_EQ(::dup2(pfd[1], 1), 1);
  // No gtest output until fd 1 is back: record what to check.
  AccessLogWriter::Options o;
  o.worker_buffer_bytes = 16 << 10;
  o.stage_bytes = 4096;
  o.flush_interval = 2ms;
  auto w = std::make_unique<AccessLogWriter>(2, o);
  std::string error;
  int out = w->destination("stdout", error);
  int file = w->destination(path("other.log"), error);
  constexpr size_t kSubmitted = 10000;  // ~1 MB: far more than the pipe holds
  for (size_t i = 0; i < kSubmitted; ++i) {
    w->submit(0, out, numbered(0, i));
    if (i % 100 == 0) std::this_thread::sleep_for(50us);
  }
  size_t file_accepted = 0;
  for (size_t i = 0; i < 30; ++i)
    file_accepted += w->submit(1, file, numbered(1, i));
  size_t file_lines = 0;
  for (int tries = 0; tries < 500 && file_lines < 30; ++tries) {
    std::this_thread::sleep_for(10ms);
    file_lines = lines_of(path("other.log")).size();
  }
  uint64_t dropped_while_stalled = w->dropped();
  std::string got;
  std::thread reader([&] {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(pfd[0], buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
  });
  w->flush_for_tests();
  uint64_t written = w->written(), dropped = w->dropped();
  w.reset();  // leaves fd 1 open
  bool fd1_open = ::fcntl(1, F_GETFD) >= 0;
  ::dup2(saved_stdout, 1);
  ::close(saved_stdout);
  ::close(pfd[1]);  // the last write end: the reader sees the end
  reader.join();
  ::close(pfd[0]);

  EXPECT_GE(out, 0);
  EXPECT_GE(file, 0);
  EXPECT_TRUE(fd1_open);
  EXPECT_EQ(file_accepted, 30u);
  EXPECT_EQ(file_lines, 30u) << "a stuck stdout held up a file";
  EXPECT_GT(dropped_while_stalled, 0u);
  EXPECT_EQ(written + dropped, kSubmitted + 30);
  size_t lines = 0, last = 0;
  std::istringstream in(got);
  for (std::string line; std::getline(in, line); ++lines) {
    Numbered n;
    ASSERT_TRUE(parse_numbered(line, n)) << "broken line: " << line;
    if (lines > 0) {
      ASSERT_GT(n.seq, last);
    }
    last = n.seq;
  }
  EXPECT_EQ(lines + 30, written);
}

TEST_F(AccessLogWriterTest, DestructorGivesUpOnAPipeNobodyReads) {
  std::string fifo = path("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  int rfd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(rfd, 0);
  AccessLogWriter::Options o;
  o.stage_bytes = 4096;
  o.shutdown_grace = 100ms;
  auto start = std::chrono::steady_clock::now();
  {
    AccessLogWriter w(1, o);
    int id = dest(w, fifo);
    for (size_t i = 0; i < 2000; ++i)  // ~200 KB
      w.submit(0, id, numbered(0, i));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  std::string got;
  char buf[65536];
  for (ssize_t n; (n = ::read(rfd, buf, sizeof buf)) > 0;)
    got.append(buf, static_cast<size_t>(n));
  ::close(rfd);
  EXPECT_GT(got.size(), 60000u);  // the pipe was filled...
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), '\n');  // ...with whole lines
}

TEST_F(AccessLogWriterTest, ReopenMovesLaterLinesToTheNewFile) {
  AccessLogWriter w(1);
  int id = dest(w, path("access.log"));
  for (size_t i = 0; i < 10; ++i)
    ASSERT_TRUE(w.submit(0, id, numbered(0, i)));
  w.flush_for_tests();
  fs::rename(path("access.log"), path("access.log.1"));  // logrotate
  // Handed over before reopen() but maybe not written yet: either file, never both, in order.
  for (size_t i = 10; i < 15; ++i)
    ASSERT_TRUE(w.submit(0, id, numbered(0, i)));
  w.reopen();
  w.flush_for_tests();
  for (size_t i = 15; i < 20; ++i)  // after the reopen: the new file
    ASSERT_TRUE(w.submit(0, id, numbered(0, i)));
  w.flush_for_tests();
  auto old_lines = lines_of(path("access.log.1"));
  auto new_lines = lines_of(path("access.log"));
  ASSERT_GE(old_lines.size(), 10u);
  ASSERT_GE(new_lines.size(), 5u);
  std::vector<std::string> all = old_lines;
  all.insert(all.end(), new_lines.begin(), new_lines.end());
  ASSERT_EQ(all.size(), 20u);
  for (size_t i = 0; i < all.size(); ++i)
    EXPECT_EQ(all[i] + "\n", numbered(0, i));
  struct stat st;
  ASSERT_EQ(::stat(path("access.log").c_str(), &st), 0);
  mode_t mask = ::umask(0);
  ::umask(mask);
  EXPECT_EQ(st.st_mode & 0777, 0640u & ~mask);
}

TEST_F(AccessLogWriterTest, ReloadReusesTheIdAndReopens) {
  AccessLogWriter w(1);
  int id = dest(w, path("access.log"));
  ASSERT_TRUE(w.submit(0, id, "one\n"));
  w.flush_for_tests();
  fs::rename(path("access.log"), path("access.log.1"));
  EXPECT_EQ(dest(w, path("access.log")), id);  // a reload asking for it again
  ASSERT_TRUE(w.submit(0, id, "two\n"));
  w.flush_for_tests();
  EXPECT_EQ(lines_of(path("access.log.1")), std::vector<std::string>{"one"});
  EXPECT_EQ(lines_of(path("access.log")), std::vector<std::string>{"two"});
}

TEST_F(AccessLogWriterTest, RetainedOutDestinationClosesAtReopen) {
  AccessLogWriter w(1);
  int a = dest(w, path("a.log"));
  int b = dest(w, path("b.log"));
  const int keep[] = {a};
  w.retain(keep);
  ASSERT_TRUE(w.submit(0, b, "late line of the old config\n"));  // still open until reopen
  w.flush_for_tests();
  EXPECT_EQ(lines_of(path("b.log")).size(), 1u);
  fs::rename(path("b.log"), path("b.log.1"));
  w.reopen();
  w.flush_for_tests();
  ASSERT_TRUE(w.submit(0, b, "dropped\n"));
  ASSERT_TRUE(w.submit(0, a, "kept\n"));
  w.flush_for_tests();
  EXPECT_FALSE(fs::exists(path("b.log")));  // not recreated
  EXPECT_EQ(w.dropped(), 1u);
  EXPECT_EQ(lines_of(path("a.log")), std::vector<std::string>{"kept"});
  EXPECT_EQ(dest(w, path("b.log")), b);  // configured again
  ASSERT_TRUE(w.submit(0, b, "back\n"));
  w.flush_for_tests();
  EXPECT_EQ(lines_of(path("b.log")), std::vector<std::string>{"back"});
}

TEST_F(AccessLogWriterTest, DestinationErrors) {
  AccessLogWriter w(1);
  std::string error;
  EXPECT_EQ(w.destination(path("missing/access.log"), error), -1);
  EXPECT_EQ(error, "open " + path("missing/access.log") + ": No such file or directory");
  EXPECT_EQ(w.destination(dir_.string(), error), -1);
  EXPECT_EQ(error, "open " + dir_.string() + ": Is a directory");
  EXPECT_EQ(w.destination("", error), -1);
  EXPECT_EQ(error, "access log path is empty");
  std::string fifo = path("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(w.destination(fifo, error), -1);  // nobody reads it: refused, not a hung reload
  EXPECT_EQ(error, "open " + fifo + ": No such device or address");
  if (::geteuid() != 0) {
    fs::create_directories(path("ro"));
    fs::permissions(path("ro"), fs::perms::owner_read | fs::perms::owner_exec);
    EXPECT_EQ(w.destination(path("ro/access.log"), error), -1);
    EXPECT_EQ(error, "open " + path("ro/access.log") + ": Permission denied");
  } else {  // root passes permission bits; sysfs refuses it a new file
    EXPECT_EQ(w.destination("/sys/weir-access.log", error), -1);
    EXPECT_TRUE(error == "open /sys/weir-access.log: Permission denied" ||
                error == "open /sys/weir-access.log: Read-only file system")
        << error;
  }
  EXPECT_EQ(w.destination("stdout", error), w.destination("stdout", error));
  EXPECT_GE(w.destination("stdout", error), 0);
}

TEST_F(AccessLogWriterTest, TooManyDestinations) {
  AccessLogWriter w(1);
  std::string error;
  for (size_t i = 0; i < AccessLogWriter::kMaxDestinations; ++i)
    ASSERT_EQ(w.destination(path(fmt::format("{}.log", i)), error), static_cast<int>(i)) << error;
  EXPECT_EQ(w.destination(path("one-more.log"), error), -1);
  EXPECT_NE(error.find("too many distinct access log paths (at most 256)"), std::string::npos);
  EXPECT_EQ(w.destination(path("7.log"), error), 7);  // known ones still work
}

TEST_F(AccessLogWriterTest, DestructorWritesEverything) {
  AccessLogWriter::Options o;
  o.flush_interval = 10s;  // only the destructor can get these out in time
  auto start = std::chrono::steady_clock::now();
  {
    AccessLogWriter w(2, o);
    int id = dest(w, path("access.log"));
    for (size_t i = 0; i < 500; ++i) {
      ASSERT_TRUE(w.submit(0, id, numbered(0, i)));
      ASSERT_TRUE(w.submit(1, id, numbered(1, i)));
    }
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(lines_of(path("access.log")).size(), 1000u);
}

TEST_F(AccessLogWriterTest, LineReachesTheFileWithinTheFlushInterval) {
  AccessLogWriter::Options o;
  o.flush_interval = 20ms;
  AccessLogWriter w(1, o);
  int id = dest(w, path("access.log"));
  std::string line;
  format_json(full_record(), line);
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(w.producer(0).log(id, LogFormat::Json, full_record()));
  while (lines_of(path("access.log")).empty() && std::chrono::steady_clock::now() - start < 5s)
    std::this_thread::sleep_for(1ms);
  EXPECT_EQ(lines_of(path("access.log")),
            std::vector<std::string>{line.substr(0, line.size() - 1)});
}

TEST_F(AccessLogWriterTest, WriteErrorsAreCountedAndDoNotStopTheWriter) {
  AccessLogWriter::Options o;
  o.flush_interval = 1ms;
  AccessLogWriter w(1, o);
  int full = dest(w, "/dev/full");  // every write fails: ENOSPC
  int good = dest(w, path("access.log"));
  for (size_t i = 0; i < 50; ++i) {
    ASSERT_TRUE(w.submit(0, full, numbered(0, i)));
    if (i % 10 == 0) w.flush_for_tests();
  }
  ASSERT_TRUE(w.submit(0, good, "fine\n"));
  w.flush_for_tests();
  EXPECT_EQ(w.dropped(), 50u);
  EXPECT_EQ(w.written(), 1u);
  EXPECT_EQ(lines_of(path("access.log")), std::vector<std::string>{"fine"});
  ASSERT_TRUE(w.submit(0, full, "one more\n"));
  EXPECT_LT(cpu_used_over(300ms), 150ms) << "the writer spins on a failing destination";
  w.flush_for_tests();
  EXPECT_EQ(w.dropped(), 51u);
}

TEST_F(AccessLogWriterTest, SubmitKeepsOneLinePerRecord) {
  AccessLogWriter::Options o;
  o.worker_buffer_bytes = 4096;
  AccessLogWriter w(1, o);
  int id = dest(w, path("access.log"));
  AccessLogProducer& p = w.producer(0);
  EXPECT_TRUE(p.submit(id, "no newline"));
  EXPECT_FALSE(p.submit(id, "two\nlines\n"));          // would forge a line: refused
  EXPECT_FALSE(p.submit(id, std::string(5000, 'x')));  // larger than the ring
  EXPECT_FALSE(p.submit(-1, "logging off\n"));         // not a destination: not counted
  EXPECT_TRUE(p.submit(id, ""));
  w.flush_for_tests();
  EXPECT_EQ(w.dropped(), 2u);
  EXPECT_EQ(w.written(), 2u);
  EXPECT_EQ(lines_of(path("access.log")), (std::vector<std::string>{"no newline", ""}));
}

}  // namespace
}  // namespace weir::proxy
