-- wrk script: POST /api/reports with random points over the demo city's centre.
-- Categories are the demo city's codes; points stay well inside its outline.
local categories = {"road", "sidewalk", "cleanliness", "lighting", "drainage", "trees",
                    "obstruction", "noise", "flooding", "traffic"}
local counter = 0

setup = function(thread)
  thread:set("seed", counter)
  counter = counter + 1
end

init = function(args)
  math.randomseed(os.time() + (seed or 0) * 7919)
end

request = function()
  local lat = 8.41 + math.random() * 0.04
  local lon = 99.945 + math.random() * 0.03
  local body = string.format(
    '{"category":"%s","description":"load test report","lat":%.6f,"lon":%.6f}',
    categories[math.random(#categories)], lat, lon)
  return wrk.format("POST", "/api/reports", {["Content-Type"] = "application/json"}, body)
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d errors_status=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.errors.status,
    latency:percentile(50), latency:percentile(99)))
end
