--[[
  Record a callback as pending on its run before the task is sent. Refused for a run that is
  not live or parked: a dead run asks for nothing.

  Input:
    KEYS[1] run record   <ns>:{<sk>}:run:<run id>
    KEYS[2] pending      <ns>:{<sk>}:run:<run id>:pending   (hash callback id -> tool)

    ARGV[1] fence   ARGV[2] callback id   ARGV[3] tool

  Output (codes as leasegate.ownership.ErrorCode):
     {0, now_ms}    recorded (the pending hash expires with the run record); the server time
                    is what the envelope's submitted-at and deadline count from
    {-2, reason}    ERR_LEASE_LOST: 'expired' | 'superseded' | 'released' | 'unknown'
]]
-- @include "now"
-- @include "runState"

local now = now_ms()
local rec = redis.call('HMGET', KEYS[1], 'state', 'exp', 'fence')
local state = effective_state(rec[1], rec[2], now)
if state ~= 'live' and state ~= 'parked' then return {-2, state} end
if rec[3] ~= ARGV[1] then return {-2, 'unknown'} end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
return {0, now}
