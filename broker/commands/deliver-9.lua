--[[
  The gate: hand one finished callback to its owner's inbox, or quarantine it. One atomic
  step with Redis server time, so no release or supersede can slip between check and write.

  Input:
    KEYS[1] run record      <ns>:{<shard>}:{<sk>}:run:<run id>
    KEYS[2] owner pointer   <ns>:{<shard>}:{<sk>}:owner
    KEYS[3] inbox           <ns>:{<shard>}:{<sk>}:run:<run id>:inbox      (stream)
    KEYS[4] resume signals  <ns>:{<shard>}:{<sk>}:run:<run id>:resume     (list, one per delivery)
    KEYS[5] pending         <ns>:{<shard>}:{<sk>}:run:<run id>:pending    (hash callback id -> tool)
    KEYS[6] callback memo   <ns>:{<shard>}:{<sk>}:run:<run id>:cb:<callback id>  (the first verdict)
    KEYS[7] dead letters    <ns>:{<shard>}:dlq                            (stream; also touches <ns>:{<shard>}:dlq:*)
    KEYS[8] counters        <ns>:{<shard>}:metrics   (delivered:<tool> / quarantined:<reason>:<tool>)
    KEYS[9] pending index   <ns>:{<shard>}:pending   (zset; the callback's member leaves with its verdict)

    ARGV[1] the call's fields, one msgpack array of strings (cmsgpack.unpack), in order:
      [1] run id             [2] fence               [3] callback id     [4] session key
      [5] tool               [6] task id             [7] kind 'result' | 'error'
      [8] body (msgpack)     [9] artifact refs (msgpack)                 [10] submitted at (ms)
      [11] deadline (ms, server time)                [12] run key prefix <ns>:{<shard>}:{<sk>}:run:
      [13] incarnation (the envelope's)
      [14] one more counter field to count with the verdict ('' for none; e.g. skipped:...)
      [15] refusal reason ('': the gate's rule decides)
      [16] refusal detail: with a reason, quarantine whatever the owner's state

  Constants (settings of the deployment, Lua locals bound once by Scripts.bind, not ARGV):
    MEMO_TTL_MS     how long the callback memo lives    DLQ_MAX_AGE_MS  dead-letter max age
    DLQ_MAX_LEN     dead-letter max count               DLQ_BODY_CAP    largest body kept in
                                                                        a dead letter (bytes)

  Output: one string, these six fields joined by '\n' (detail last: it may hold '\n' itself;
  one bulk reply reads faster in redis-py than a six-element array):
          delivered 1|0, reason, entry id, seq, repeat 1|0, detail
    delivered=1: entry id is the inbox stream id, seq its position (1 is always the prompt)
    delivered=0: entry id is the dead-letter id; reason one of
      'lease_expired' | 'run_released' | 'superseded' | 'unknown_run' | 'deadline_passed'
      | field [15] (a worker's refusal: 'deadline_too_long')
    repeat=1: this callback id was seen before; the first verdict is returned, nothing written
              (field [14] is counted only with the first verdict, so a retry never counts twice)
]]
-- @durable: with LEASEGATE_MIN_REPLICAS, confirmed by WAIT before its reply counts
-- @constants MEMO_TTL_MS DLQ_MAX_AGE_MS DLQ_MAX_LEN DLQ_BODY_CAP
-- @include "now"
-- @include "runState"
-- @include "admission"
-- @include "deadLetter"

local function verdict(delivered, reason, entry, seq, rep, detail)
  return delivered .. '\n' .. reason .. '\n' .. entry .. '\n' .. seq .. '\n' .. rep .. '\n'
         .. detail
end

local now = now_ms()

local memo = redis.call('HMGET', KEYS[6], 'd', 'reason', 'entry', 'seq', 'detail')
if memo[1] then
  return verdict(memo[1], memo[2] or '', memo[3] or '', memo[4] or 0, 1, memo[5] or '')
end

local a = cmsgpack.unpack(ARGV[1])
local run_id, fence, cb, sk, tool, task = a[1], a[2], a[3], a[4], a[5], a[6]
local kind, result, arts, submitted, deadline = a[7], a[8], a[9], a[10], a[11]
local run_prefix, incarnation, count, refusal = a[12], a[13], a[14], a[15]

local reason, detail, state, inbox_len = admission(KEYS[1], KEYS[2], KEYS[3], run_id, fence,
                                                    incarnation, tonumber(deadline), now)
-- a worker refused the envelope itself: its verdict is that refusal, live owner or not
if refusal ~= '' then reason, detail = refusal, a[16] end
if count ~= '' then redis.call('HINCRBY', KEYS[8], count, 1) end

if reason == nil then
  local seq = inbox_len + 1
  local id = redis.call('XADD', KEYS[3], '*', 'seq', seq, 'role', 'tool', 'kind', kind,
                        'cb', cb, 'body', result, 'arts', arts, 'tool', tool,
                        'task', task, 'fence', fence, 'at', now, 'sub', submitted)
  redis.call('HDEL', KEYS[5], cb)
  redis.call('ZREM', KEYS[9], sk .. '\n' .. run_id .. '\n' .. cb)
  -- live or parked: a runtime may block on the signal either way. A new list takes the
  -- record's expiry; every later change of that expiry moves both (touch_run), so one PTTL
  if redis.call('RPUSH', KEYS[4], cb) == 1 then
    redis.call('PEXPIRE', KEYS[4], redis.call('PTTL', KEYS[1]))
  end
  redis.call('HSET', KEYS[6], 'd', 1, 'reason', '', 'entry', id, 'seq', seq, 'detail', state,
             'at', now)
  redis.call('PEXPIRE', KEYS[6], MEMO_TTL_MS)
  redis.call('HINCRBY', KEYS[8], 'delivered:' .. tool, 1)
  return verdict(1, '', id, seq, 0, state)
end

-- who owns the session now, for the record (RabbitMQ's x-death keeps the same kind of trail)
local owner_run = redis.call('GET', KEYS[2]) or ''
local owner_fence = ''
if owner_run ~= '' then owner_fence = redis.call('HGET', run_prefix .. owner_run, 'fence') or '' end

local body, truncated = result, 0
if #body > DLQ_BODY_CAP then body, truncated = '', #result end
local fields = {'detail', detail, 'run', run_id, 'fence', fence, 'owner_run', owner_run,
                'owner_fence', owner_fence, 'task', task, 'cb', cb, 'kind', kind,
                'submitted', submitted, 'completed', now, 'deadline', deadline,
                'run_state', state, 'body', body, 'truncated', truncated, 'arts', arts}
local letter_id = dead_letter(KEYS[7], reason, sk, tool, fields, now, DLQ_MAX_AGE_MS,
                              DLQ_MAX_LEN)
redis.call('HDEL', KEYS[5], cb)
redis.call('ZREM', KEYS[9], sk .. '\n' .. run_id .. '\n' .. cb)
redis.call('HSET', KEYS[6], 'd', 0, 'reason', reason, 'entry', letter_id, 'seq', 0,
           'detail', detail, 'at', now)
redis.call('PEXPIRE', KEYS[6], MEMO_TTL_MS)
redis.call('HINCRBY', KEYS[8], 'quarantined:' .. reason .. ':' .. tool, 1)
return verdict(0, reason, letter_id, 0, 0, detail)
