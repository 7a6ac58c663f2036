// The cost of one access-log line on a worker: formatting a typical record (JSON, combined, and
// JSON with a hostile User-Agent/path that needs escaping), handing a finished line to the
// writer (submit, and submit when the ring is full) and both together (log). The writer thread
// writes to /dev/null.
//   cmake -B build/rel -G Ninja -DCMAKE_BUILD_TYPE=Release -DWEIR_MICROBENCH=ON -DWEIR_TESTS=OFF
//   ninja -C build/rel weir_access_log_bench && build/rel/bench/micro/weir_access_log_bench
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>

#include "proxy/access_log.hpp"

namespace weir::proxy {
namespace {

AccessRecord typical() {
  AccessRecord r;
  r.time_unix_ms = 1796054683123;
  r.listener = "web";
  r.client = "203.0.113.7:51234";
  r.method = "GET";
  r.host = "shop.example.com";
  r.path = "/api/v1/products/12345?page=2&sort=price";
  r.proto = "HTTP/1.1";
  r.status = 200;
  r.bytes_in = 412;
  r.bytes_out = 18231;
  r.duration_ms = 3.2171;
  r.backend = "api";
  r.server = "api-2";
  r.upstream_ms = 2.904;
  r.retries = 0;
  r.request_id = "7f3a9c2e41d84b6f";
  r.tls = "TLSv1.3";
  r.termination = Termination::Ok;
  r.user_agent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
  r.referer = "https://shop.example.com/products";
  return r;
}

void BM_FormatJson(benchmark::State& state) {
  AccessRecord r = typical();
  std::string out;
  for (auto _ : state) {
    out.clear();
    r.time_unix_ms += 1;  // a new millisecond each line, a new second every 1000
    format_json(r, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["bytes/line"] = static_cast<double>(out.size());
}
BENCHMARK(BM_FormatJson);

void BM_FormatJsonHostile(benchmark::State& state) {
  AccessRecord r = typical();
  std::string ua = "Mozilla\n{\"forged\":1}\r\x1b[31m\x7f\xff caf\xc3\xa9 \xe2\x82\xac";
  std::string path = "/a\"b\\c?q=\x01\x02\xc0\xaf";
  r.user_agent = ua;
  r.path = path;
  r.host = ua;
  std::string out;
  for (auto _ : state) {
    out.clear();
    format_json(r, out);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_FormatJsonHostile);

void BM_FormatCombined(benchmark::State& state) {
  AccessRecord r = typical();
  std::string out;
  for (auto _ : state) {
    out.clear();
    r.time_unix_ms += 1;
    format_combined(r, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["bytes/line"] = static_cast<double>(out.size());
}
BENCHMARK(BM_FormatCombined);

// submit() as a worker sees it: room in its ring. Every kBatch lines (well under what the ring
// holds) the clock stops while the writer empties the ring, so no iteration takes the (cheaper)
// refusal path; "dropped%" shows that it stayed at 0.
constexpr int64_t kBatch = 4096;

AccessLogWriter::Options bench_options() {
  AccessLogWriter::Options o;
  o.worker_buffer_bytes = 4 << 20;
  return o;
}

void BM_Submit(benchmark::State& state) {
  AccessLogWriter w(1, bench_options());
  std::string error;
  int id = w.destination("/dev/null", error);
  std::string line;
  format_json(typical(), line);
  AccessLogProducer& p = w.producer(0);
  int64_t n = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(p.submit(id, line));
    if (++n % kBatch == 0) {
      state.PauseTiming();
      w.flush_for_tests();
      state.ResumeTiming();
    }
  }
  state.counters["dropped%"] =
      100.0 * static_cast<double>(p.dropped()) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_Submit);

// What a worker pays per request: format_json into its scratch string + submit.
void BM_FormatAndSubmit(benchmark::State& state) {
  AccessLogWriter w(1, bench_options());
  std::string error;
  int id = w.destination("/dev/null", error);
  AccessRecord r = typical();
  AccessLogProducer& p = w.producer(0);
  int64_t n = 0;
  for (auto _ : state) {
    r.time_unix_ms += 1;
    benchmark::DoNotOptimize(p.log(id, LogFormat::Json, r));
    if (++n % kBatch == 0) {
      state.PauseTiming();
      w.flush_for_tests();
      state.ResumeTiming();
    }
  }
  state.counters["dropped%"] =
      100.0 * static_cast<double>(p.dropped()) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_FormatAndSubmit);

// The refusal path: a writer that never drains (stalled), every line dropped and counted.
void BM_SubmitDropped(benchmark::State& state) {
  AccessLogWriter::Options o;
  o.worker_buffer_bytes = 4096;
  o.flush_interval = std::chrono::milliseconds(1000000);
  AccessLogWriter w(1, o);
  std::string error;
  int id = w.destination("/dev/null", error);
  std::string line;
  format_json(typical(), line);
  AccessLogProducer& p = w.producer(0);
  while (p.submit(id, line)) {
  }
  for (auto _ : state)
    benchmark::DoNotOptimize(p.submit(id, line));
}
BENCHMARK(BM_SubmitDropped);

}  // namespace
}  // namespace weir::proxy
