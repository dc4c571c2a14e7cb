--[[
  Take one request from a token's bucket (token bucket on Redis server time): every `serve`
  process behind one address draws from the same bucket.

  Input:
    KEYS[1] bucket   <ns>:ratelimit:<token name>   (hash: tokens, at)

    ARGV[1] rate (requests per second, > 0)   ARGV[2] burst (bucket size, >= 1)

  Output:
    {1, remaining, 0}         admitted
    {0, 0, retry after (ms)}  over the limit: nothing taken
]]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local admitted, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  admitted = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
-- a full bucket needs no key: it lapses once refilled
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {admitted, math.floor(tokens), wait}
