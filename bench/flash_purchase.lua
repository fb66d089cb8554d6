-- wrk script: flash-sale purchase attempts, each from the next of the users in $WXSHOP_BENCH_TOKENS
-- (`user_id token address_id` lines, as `wxshop dev-tokens` prints them), each with a fresh Idempotency-Key.
local buyers = {}
local n = 0
local sale = os.getenv("WXSHOP_BENCH_SALE") or "1"

function init(args)
  for line in io.lines(os.getenv("WXSHOP_BENCH_TOKENS")) do
    local _, token, address = line:match("^(%d+) (%S+) (%d+)$")
    if token then buyers[#buyers + 1] = { token, address } end
  end
  math.randomseed(os.time() + #buyers)
end

function request()
  n = n + 1
  local b = buyers[(n % #buyers) + 1]
  local headers = {
    ["Authorization"] = "Bearer " .. b[1],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "bench-" .. n .. "-" .. math.random(1, 1000000000),
  }
  return wrk.format("POST", "/api/v1/flash-sales/" .. sale .. "/purchase", headers,
    '{"quantity":1,"address_id":' .. b[2] .. '}')
end
