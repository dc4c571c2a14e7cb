--[[
  Would the gate deliver this callback now? Read-only: workers ask before spending GPU
  minutes, and between steps while they work. The same rule (includes/admission.lua) and clock as deliver-9.lua.

  Input:
    KEYS[1] run record     <ns>:{<shard>}:{<sk>}:run:<run id>
    KEYS[2] owner pointer  <ns>:{<shard>}:{<sk>}:owner
    KEYS[3] callback memo  <ns>:{<shard>}:{<sk>}:run:<run id>:cb:<callback id>
    KEYS[4] inbox          <ns>:{<shard>}:{<sk>}:run:<run id>:inbox

    ARGV[1] fence   ARGV[2] deadline (ms, server time)   ARGV[3] run id   ARGV[4] incarnation

  Output: {admitted 1|0, reason, repeat 1|0}
    admitted=1: the owner is live or parked, current, and the deadline has not passed
    repeat=1: the callback already has a verdict (a redelivered message): do no work again
    reason: '' or one of 'lease_expired' | 'run_released' | 'superseded' | 'unknown_run' |
            'deadline_passed' | 'delivered' (repeat of a delivered callback)
]]
-- @include "now"
-- @include "runState"
-- @include "admission"

local now = now_ms()
local memo = redis.call('HMGET', KEYS[3], 'd', 'reason')
if memo[1] then
  if memo[1] == '1' then return {0, 'delivered', 1} end
  return {0, memo[2], 1}
end
local reason = admission(KEYS[1], KEYS[2], KEYS[4], ARGV[3], ARGV[1], ARGV[4],
                         tonumber(ARGV[2]), now)
if reason then return {0, reason, 0} end
return {1, '', 0}
