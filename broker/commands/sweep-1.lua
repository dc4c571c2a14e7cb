--[[
  Retention without new arrivals: turn letters past max age, or beyond max count, into counted
  'expired' tombstones, oldest first, a bounded number per call (the same sweep the gate runs
  on every quarantine).

  Input:
    KEYS[1] dead letters  <ns>:{<shard>}:dlq                  (stream; also <ns>:{<shard>}:dlq:letter:*, idx:*, stats)

    ARGV[1] max age (ms)   ARGV[2] max count   ARGV[3] most tombstones this call

  Output: {tombstoned, more 1|0}   more=1: the oldest letter left is due as well
]]
-- @include "now"
-- @include "deadLetter"

local now = now_ms()
local max_age, max_len = tonumber(ARGV[1]), tonumber(ARGV[2])
local before = redis.call('XLEN', KEYS[1])
sweep(KEYS[1], now, max_age, max_len, tonumber(ARGV[3]))
local left = redis.call('XLEN', KEYS[1])
local more = 0
if left > max_len then
  more = 1
elseif left > 0 then
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if tonumber(string.match(first[1][1], '^(%d+)')) + max_age <= now then more = 1 end
end
return {before - left, more}
