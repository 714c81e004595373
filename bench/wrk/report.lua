-- Shared by the API benchmark's scripts: one JSON line for bench/load.py to read.
report = function(summary, latency)
  local errors = summary.errors
  io.write(string.format('\n{"requests": %d, "failed": %d, "seconds": %f, "p50": %f, "p99": %f}\n',
    summary.requests, errors.status + errors.connect + errors.read + errors.write + errors.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1e6, latency:percentile(99) / 1e6))
end
