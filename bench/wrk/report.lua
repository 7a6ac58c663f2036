-- wrk script used by every wrk scenario of bench/bench.py.
-- WRK_POST_BYTES=N turns the requests into POSTs with an N-byte body.
-- done() prints one machine-readable line starting with "JSON:".
local post = tonumber(os.getenv("WRK_POST_BYTES") or "")
if post and post > 0 then
  wrk.method = "POST"
  wrk.body = string.rep("x", post)
  wrk.headers["Content-Type"] = "application/octet-stream"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON:{"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
