-- wrk: POST the example order as a partner address (203.0.113.10, right-most X-Forwarded-For entry).
local f = assert(io.open(os.getenv("ORDER_FILE"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a"):gsub("%s+$", "")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Forwarded-For"] = "203.0.113.10"

local statuses = {}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  -- One line wrk's own report does not have: the latency percentiles and statuses, machine-readable.
  io.write(string.format("GUARD_WRK {\"rps\": %.1f, \"p50_us\": %d, \"p90_us\": %d, \"p99_us\": %d, \"p999_us\": %d, \"requests\": %d, \"errors\": %d}\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
