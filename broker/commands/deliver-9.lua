--[[
  The gate: hand one finished callback to its owner's inbox, or quarantine it. One atomic
  step with Redis server time, so no release or supersede can slip between check and write.

  Input:
    KEYS[1] run record      <ns>:{<sk>}:run:<run id>
    KEYS[2] owner pointer   <ns>:{<sk>}:owner
    KEYS[3] inbox           <ns>:{<sk>}:run:<run id>:inbox      (stream)
    KEYS[4] resume signals  <ns>:{<sk>}:run:<run id>:resume     (list, one per delivery)
    KEYS[5] pending         <ns>:{<sk>}:run:<run id>:pending    (hash callback id -> tool)
    KEYS[6] callback memo   <ns>:{<sk>}:run:<run id>:cb:<callback id>  (the first verdict)
    KEYS[7] dead letters    <ns>:dlq                            (stream; also touches <ns>:dlq:*)
    KEYS[8] counters        <ns>:metrics   (delivered:<tool> / quarantined:<reason>:<tool>)
    KEYS[9] pending index   <ns>:pending   (zset; the callback's member leaves with its verdict)

    ARGV[1] run id            ARGV[2] fence               ARGV[3] callback id
    ARGV[4] session key       ARGV[5] tool                ARGV[6] task id
    ARGV[7] kind 'result' | 'error'                       ARGV[8] body (msgpack)
    ARGV[9] artifact refs (msgpack)                       ARGV[10] submitted at (ms)
    ARGV[11] deadline (ms, server time)                   ARGV[12] memo ttl (ms)
    ARGV[13] dead-letter max age (ms)                     ARGV[14] dead-letter max count
    ARGV[15] largest body kept in a dead letter (bytes)   ARGV[16] run key prefix <ns>:{<sk>}:run:
    ARGV[17] incarnation (the envelope's)
    ARGV[18] one more counter field to count with the verdict ('' for none; e.g. skipped:...)
    ARGV[19] refusal reason (optional; '' or absent: the gate's rule decides)
    ARGV[20] refusal detail (optional): with a reason, quarantine whatever the owner's state

  Output: {delivered 1|0, reason, entry id, seq, repeat 1|0, detail}
    delivered=1: entry id is the inbox stream id, seq its position (1 is always the prompt)
    delivered=0: entry id is the dead-letter id; reason one of
      'lease_expired' | 'run_released' | 'superseded' | 'unknown_run' | 'deadline_passed'
      | ARGV[19] (a worker's refusal: 'deadline_too_long')
    repeat=1: this callback id was seen before; the first verdict is returned, nothing written
              (ARGV[18] is counted only with the first verdict, so a retry never counts twice)
]]
-- @durable: with LEASEGATE_MIN_REPLICAS, confirmed by WAIT before its reply counts
-- @include "now"
-- @include "runState"
-- @include "admission"
-- @include "deadLetter"

local now = now_ms()

local memo = redis.call('HMGET', KEYS[6], 'd', 'reason', 'entry', 'seq', 'detail')
if memo[1] then return {tonumber(memo[1]), memo[2], memo[3], tonumber(memo[4]), 1, memo[5]} end

local reason, detail, state, inbox_len = admission(KEYS[1], KEYS[2], KEYS[3], ARGV[1],
                                                    ARGV[2], ARGV[17], tonumber(ARGV[11]), now)
-- a worker refused the envelope itself: its verdict is that refusal, live owner or not
if ARGV[19] and ARGV[19] ~= '' then reason, detail = ARGV[19], ARGV[20] end
if ARGV[18] ~= '' then redis.call('HINCRBY', KEYS[8], ARGV[18], 1) end

local memo_ttl = tonumber(ARGV[12])
if reason == nil then
  local seq = inbox_len + 1
  local id = redis.call('XADD', KEYS[3], '*', 'seq', seq, 'role', 'tool', 'kind', ARGV[7],
                        'cb', ARGV[3], 'body', ARGV[8], 'arts', ARGV[9], 'tool', ARGV[5],
                        'task', ARGV[6], 'fence', ARGV[2], 'at', now, 'sub', ARGV[10])
  redis.call('HDEL', KEYS[5], ARGV[3])
  redis.call('ZREM', KEYS[9], ARGV[4] .. '\n' .. ARGV[1] .. '\n' .. ARGV[3])
  -- live or parked: a runtime may block on the signal either way
  redis.call('RPUSH', KEYS[4], ARGV[3])
  redis.call('PEXPIRE', KEYS[4], redis.call('PTTL', KEYS[1]))
  redis.call('HSET', KEYS[6], 'd', 1, 'reason', '', 'entry', id, 'seq', seq, 'detail', state,
             'at', now)
  redis.call('PEXPIRE', KEYS[6], memo_ttl)
  redis.call('HINCRBY', KEYS[8], 'delivered:' .. ARGV[5], 1)
  return {1, '', id, seq, 0, state}
end

-- who owns the session now, for the record (RabbitMQ's x-death keeps the same kind of trail)
local owner_run = redis.call('GET', KEYS[2]) or ''
local owner_fence = ''
if owner_run ~= '' then owner_fence = redis.call('HGET', ARGV[16] .. owner_run, 'fence') or '' end

local body, truncated = ARGV[8], 0
if #body > tonumber(ARGV[15]) then body, truncated = '', #ARGV[8] end
local fields = {'detail', detail, 'run', ARGV[1], 'fence', ARGV[2], 'owner_run', owner_run,
                'owner_fence', owner_fence, 'task', ARGV[6], 'cb', ARGV[3], 'kind', ARGV[7],
                'submitted', ARGV[10], 'completed', now, 'deadline', ARGV[11],
                'run_state', state, 'body', body, 'truncated', truncated, 'arts', ARGV[9]}
local letter_id = dead_letter(KEYS[7], reason, ARGV[4], ARGV[5], fields, now,
                           tonumber(ARGV[13]), tonumber(ARGV[14]))
redis.call('HDEL', KEYS[5], ARGV[3])
redis.call('ZREM', KEYS[9], ARGV[4] .. '\n' .. ARGV[1] .. '\n' .. ARGV[3])
redis.call('HSET', KEYS[6], 'd', 0, 'reason', reason, 'entry', letter_id, 'seq', 0,
           'detail', detail, 'at', now)
redis.call('PEXPIRE', KEYS[6], memo_ttl)
redis.call('HINCRBY', KEYS[8], 'quarantined:' .. reason .. ':' .. ARGV[5], 1)
return {0, reason, letter_id, 0, 0, detail}
