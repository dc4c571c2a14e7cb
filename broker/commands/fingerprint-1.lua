--[[
  Record the secret fingerprints of one worker or runtime, on Redis server time: that name's
  earlier record goes (another secret before a restart), records older than the window go, and
  beyond the most records kept the oldest go; the key lapses a window after its last record.
  Bounded in size and in time, however many processes come and go.

  Input:
    KEYS[1] records  <ns>:fingerprints:<role>   (sorted set: "<fingerprints>|<name>" by record time, ms)

    ARGV[1] the record "<fingerprints>|<name>"   ARGV[2] window (ms)   ARGV[3] most records kept

  Output: the number of records kept
]]
-- @include "now"

local now = now_ms()
local entry, window, most = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local function name_of(member)
  local bar = string.find(member, '|', 1, true)
  return bar and string.sub(member, bar + 1)
end
local name = name_of(entry)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do  -- at most `most` of them
  if name_of(member) == name then redis.call('ZREM', KEYS[1], member) end
end
redis.call('ZADD', KEYS[1], now, entry)
local count = redis.call('ZCARD', KEYS[1])
if count > most then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, count - most - 1)  -- the oldest
  count = most
end
redis.call('PEXPIRE', KEYS[1], window)
return count
