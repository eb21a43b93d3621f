-- GCRA rate limiter for Redis (>= 5, effect replication), the comparison point
-- of bench/run.sh: what a user would run instead of ballast for a shared quota.
-- It is the usual shape of Redis rate limiters (redis-cell, redis_rate, ...):
-- one key per limit holding the theoretical arrival time (TAT), the clock read
-- inside the script so every client agrees on "now".
--
--   EVALSHA <sha> 1 <key> <emission_interval_us> <burst_tolerance_us> [cost]
--
-- emission_interval_us  period / limit, in microseconds (may be fractional:
--                       1e9 per minute is 0.06)
-- burst_tolerance_us    how far the TAT may run ahead of now, in microseconds:
--                       (burst - 1) * emission_interval for a burst of `burst`
-- cost                  units this request takes (default 1)
--
-- Returns {allowed, retry_after_us, reset_after_us}: allowed is 1 or 0;
-- retry_after_us is 0 when allowed, else how long until this request would
-- conform; reset_after_us is how long until the limiter is idle (full burst).
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3] or "1")
if not interval or interval <= 0 or not tolerance or tolerance < 0 or not cost or cost < 0 then
  return redis.error_reply("gcra: want emission_interval_us > 0, burst_tolerance_us >= 0, cost >= 0")
end

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local tat = tonumber(redis.call("GET", key)) or now
if tat < now then
  tat = now
end

local new_tat = tat + cost * interval
-- Conforms when the TAT after this request lies within tolerance + one interval of now.
local allow_at = new_tat - tolerance - interval
if allow_at > now then
  return {0, math.ceil(allow_at - now), math.ceil(tat - now)}
end

local reset_after = new_tat - now
-- The key expires once the limiter is idle again, so unused keys cost nothing.
redis.call("SET", key, string.format("%.3f", new_tat), "PX", math.ceil(reset_after / 1000) + 1)
return {1, 0, math.ceil(reset_after)}
