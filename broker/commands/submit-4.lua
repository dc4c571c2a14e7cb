--[[
  Record a callback as pending on its run before the task is sent, and index its deadline for
  the reaper. Refused for a run that is not live or parked (a dead run asks for nothing) and
  for a callback id this run already used, unless it is the same request retried.

  Input:
    KEYS[1] run record     <ns>:{<shard>}:{<sk>}:run:<run id>
    KEYS[2] pending        <ns>:{<shard>}:{<sk>}:run:<run id>:pending    (hash callback id -> tool)
    KEYS[3] requests       <ns>:{<shard>}:{<sk>}:run:<run id>:requests   (hash callback id -> '<request id> <now>')
    KEYS[4] pending index  <ns>:{<shard>}:pending   (sorted set '<sk>\n<run id>\n<callback id>' by deadline ms)

    ARGV[1] fence   ARGV[2] callback id   ARGV[3] tool   ARGV[4] request id (fresh per submit call)
    ARGV[5] deadline duration (ms)        ARGV[6] session key   ARGV[7] run id
    ARGV[8] incarnation

  Output (codes as leasegate.ownership.ErrorCode):
     {0, now_ms}       recorded (pending and requests expire with the run record); the server
                       time is what the envelope's submitted-at and deadline count from. A
                       retry of the same request returns the first call's time, nothing written
    {-2, reason}       ERR_LEASE_LOST: 'expired' | 'superseded' | 'released' | 'unknown'
    {-30, request id}  ERR_CALLBACK_ID_USED: another submit of this run took the callback id
]]
-- @include "now"
-- @include "runState"

local now = now_ms()
local rec = redis.call('HMGET', KEYS[1], 'state', 'exp', 'fence', 'inc')
local ours = rec[3] == ARGV[1] and (rec[4] or '') == ARGV[8]
local taken = redis.call('HGET', KEYS[3], ARGV[2])
if ours and taken then
  local request, at = string.match(taken, '^(%S+) (%d+)$')
  -- the same call retried after a lost reply: its own entry, as the first call left it
  if request == ARGV[4] then return {0, tonumber(at)} end
end
local state = effective_state(rec[1], rec[2], now)
if state ~= 'live' and state ~= 'parked' then return {-2, state} end
if not ours then return {-2, 'unknown'} end
if taken then return {-30, string.match(taken, '^(%S+)') or ''} end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('HSET', KEYS[3], ARGV[2], ARGV[4] .. ' ' .. now)
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[5]),
           ARGV[6] .. '\n' .. ARGV[7] .. '\n' .. ARGV[2])
return {0, now}
