--[[
  Read a run record together with the server time that decides whether it has expired.

  Input:
    KEYS[1] run record <ns>:{<shard>}:{<sk>}:run:<run id>

  Output:
    {now_ms, effective_state, field1, value1, ...}   effective_state 'unknown' with no fields when gone
]]
-- @include "now"
-- @include "runState"

local now = now_ms()
local rec = redis.call('HGETALL', KEYS[1])
local fields = {}
for i = 1, #rec, 2 do fields[rec[i]] = rec[i + 1] end
local out = {now, effective_state(fields['state'], fields['exp'], now)}
for i = 1, #rec do out[#out + 1] = rec[i] end
return out
