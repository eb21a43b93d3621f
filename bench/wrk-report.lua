-- Prints one machine-readable line after a wrk run:
-- RESULT requests=<n> duration_s=<s> rps=<r> p50_us=<> p99_us=<> p999_us=<> max_us=<> errors=<n>
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
               + summary.errors.status + summary.errors.timeout
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d duration_s=%.2f rps=%.0f p50_us=%d p99_us=%d p999_us=%d max_us=%d errors=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    latency.max, errors))
end
