-- wrk script for bench/serve_load.py: send the bodies of a file (one JSON per line) in turn and print
-- requests, wall time and latency percentiles as one JSON line at the end.
-- wrk -t1 -cC -dSECONDSs -s bench/wrk_bodies.lua URL -- BODIES_FILE METHOD
local bodies, next_body = {}, 0

function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  wrk.method = args[2]
  if wrk.method == "POST" then wrk.headers["Content-Type"] = "application/json" end
end

function request()
  if #bodies == 0 then return wrk.format() end
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[next_body])
end

function done(summary, latency, requests)
  io.write(string.format('{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "non2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
