--[[
  Extend the lease of a live or parked run: renew (heartbeat, back to 'live') or park
  (alive without heartbeats until a deadline).

  Input:
    KEYS[1]     run record   <ns>:{<shard>}:{<sk>}:run:<run id>
    KEYS[2]     owner pointer <ns>:{<shard>}:{<sk>}:owner
    KEYS[3]     counters      <ns>:{<shard>}:metrics   (renew_failed:<reason> moves on every refusal)
    KEYS[4..n]  companion keys of the run (inbox, resume signals, ...): same expiry as the record

    ARGV[1] fence the caller holds
    ARGV[2] new state        'live' (renew) | 'parked' (park)
    ARGV[3] duration (ms)    0 = the run's own ttl (renew only)
    ARGV[4] retention (ms)
    ARGV[5] incarnation the caller holds ('' = not known: the fence alone decides)

  Output (codes as leasegate.ownership.ErrorCode):
     {0, expires_at_ms, now_ms, ttl_ms}     extended
    {-2, reason}                            ERR_LEASE_LOST: 'expired' | 'superseded' | 'released' | 'unknown'
]]
-- @include "now"
-- @include "runState"
-- @include "touchRun"

local now = now_ms()
local rec = redis.call('HMGET', KEYS[1], 'state', 'exp', 'fence', 'ttl', 'inc')
local state = effective_state(rec[1], rec[2], now)
if state ~= 'live' and state ~= 'parked' then
  redis.call('HINCRBY', KEYS[3], 'renew_failed:' .. state, 1)
  return {-2, state}
end
-- a different fence or incarnation means a different (forged, stale or pre-data-loss) lease
if rec[3] ~= ARGV[1] or ((ARGV[5] or '') ~= '' and (rec[5] or '') ~= ARGV[5]) then
  redis.call('HINCRBY', KEYS[3], 'renew_failed:unknown', 1)
  return {-2, 'unknown'}
end

local ttl = tonumber(rec[4])
local duration = tonumber(ARGV[3])
if ARGV[2] == 'live' then
  if duration > 0 then ttl = duration end
  duration = ttl
end
local exp = now + duration
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'exp', exp, 'ttl', ttl, 'updated', now)
touch_run(1, 2, exp + tonumber(ARGV[4]))
touch_run(4, #KEYS, exp + tonumber(ARGV[4]))
return {0, exp, now, ttl}
