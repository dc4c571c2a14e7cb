--[[
  Release a run: it ended with an outcome. Idempotent.

  Input:
    KEYS[1]     run record    <ns>:{<shard>}:{<sk>}:run:<run id>
    KEYS[2]     owner pointer <ns>:{<shard>}:{<sk>}:owner
    KEYS[3..n]  companion keys of the run: kept for the retention from now on

    ARGV[1] run id
    ARGV[2] fence the caller holds
    ARGV[3] outcome          'completed' | 'failed' | 'cancelled'
    ARGV[4] retention (ms)
    ARGV[5] incarnation the caller holds ('' = not known: the fence alone decides)

  Output:
    {0, 'released', outcome}    released now
    {1, 'released', outcome}    was already released (outcome is the first one given)
    {2, state, ''}              not releasable any more: 'expired' | 'superseded' | 'unknown'
]]
-- @include "now"
-- @include "runState"
-- @include "touchRun"

local now = now_ms()
local rec = redis.call('HMGET', KEYS[1], 'state', 'exp', 'fence', 'outcome', 'inc')
local state = effective_state(rec[1], rec[2], now)
if state == 'released' then return {1, 'released', rec[4]} end
if state ~= 'live' and state ~= 'parked' then return {2, state, ''} end
if rec[3] ~= ARGV[2] or ((ARGV[5] or '') ~= '' and (rec[5] or '') ~= ARGV[5]) then
  return {2, 'unknown', ''}
end

redis.call('HSET', KEYS[1], 'state', 'released', 'outcome', ARGV[3], 'ended', now, 'updated', now)
touch_run(1, #KEYS, now + tonumber(ARGV[4]))
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return {0, 'released', ARGV[3]}
