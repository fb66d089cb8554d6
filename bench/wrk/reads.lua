-- wrk script: wxshop's reads for the growth and promotion-burst scenarios (bench/run.sh).
--   wrk -s reads.lua URL -- <pairs file> <mode>
-- pairs file: `<user_id> <jwt> <order id> ...` lines (`wxshop dev-tokens --orders`). Modes:
--   list     GET /api/v1/orders?limit=20, one per user (the first page: served from the cache)
--   list_db  GET /api/v1/orders?limit=10, one per user (another page size: the database query every time)
--   mixed    per user, the first page and then one of their orders by id (the promotion-burst reads)
local reqs, n, i = {}, 0, 0

function init(args)
  local mode = args[2] or "list"
  local k = 0
  for line in io.lines(args[1]) do
    local f = {}
    for w in line:gmatch("%S+") do f[#f + 1] = w end
    if #f >= 2 then
      k = k + 1
      local auth = { ["Authorization"] = "Bearer " .. f[2] }
      if mode == "list" or mode == "mixed" then
        reqs[#reqs + 1] = wrk.format("GET", "/api/v1/orders?limit=20", auth)
      elseif mode == "list_db" then
        reqs[#reqs + 1] = wrk.format("GET", "/api/v1/orders?limit=10", auth)
      end
      if mode == "mixed" and #f >= 3 then
        reqs[#reqs + 1] = wrk.format("GET", "/api/v1/orders/" .. f[3 + (k % (#f - 2))], auth)
      end
    end
  end
  n = #reqs
  assert(n > 0, "no requests built from " .. tostring(args[1]))
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d max_us=%d non2xx=%d sockerr=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect + e.read + e.write + e.timeout))
end
