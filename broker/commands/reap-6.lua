--[[
  The reaper's verdict for one callback that got none: still pending past its deadline plus a
  grace (a hard time limit, a lost worker, a failure outside leasegate acked its task without
  delivering). It goes to the dead letters as 'no_verdict', once; the memo it writes makes a
  late worker's delivery a repeat that changes nothing.

  Input:
    KEYS[1] pending index   <ns>:{<shard>}:pending                        (zset member -> deadline ms)
    KEYS[2] pending         <ns>:{<shard>}:{<sk>}:run:<run id>:pending    (hash callback id -> tool)
    KEYS[3] callback memo   the gate's memo of this callback    (the first verdict)
    KEYS[4] run record      <ns>:{<shard>}:{<sk>}:run:<run id>            (its state, for the record)
    KEYS[5] dead letters    <ns>:{<shard>}:dlq                            (stream; also touches <ns>:{<shard>}:dlq:*)
    KEYS[6] counters        <ns>:{<shard>}:metrics   (quarantined:no_verdict:<tool>)

    ARGV[1] index member '<sk>\n<run id>\n<callback id>'
    ARGV[2] session key     ARGV[3] run id      ARGV[4] callback id
    ARGV[5] grace (ms)      ARGV[6] memo ttl (ms)
    ARGV[7] dead-letter max age (ms)            ARGV[8] dead-letter max count

  Output: {outcome, dead-letter id or ''}
    outcome 'reaped'   a 'no_verdict' letter was written (its id follows)
    outcome 'verdict'  the callback had a verdict already: only the index member was removed
    outcome 'not_due'  its deadline plus grace has not passed on server time: nothing written
    outcome 'gone'     no such member (another reaper took it): nothing written
]]
-- @durable: with LEASEGATE_MIN_REPLICAS, confirmed by WAIT before its reply counts
-- @include "now"
-- @include "runState"
-- @include "deadLetter"

local now = now_ms()
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not deadline then return {'gone', ''} end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return {'verdict', ''}
end
deadline = tonumber(deadline)
if deadline + tonumber(ARGV[5]) > now then return {'not_due', ''} end

-- what is known: the tool from the run's pending hash (gone if the run record expired)
local tool = redis.call('HGET', KEYS[2], ARGV[4]) or ''
local rec = redis.call('HMGET', KEYS[4], 'state', 'exp', 'fence')
local state = effective_state(rec[1], rec[2], now)
local detail = 'no verdict by deadline + ' .. ARGV[5] .. ' ms grace'
local fields = {'detail', detail, 'run', ARGV[3], 'fence', rec[3] or '', 'cb', ARGV[4],
                'kind', '', 'completed', now, 'deadline', deadline, 'run_state', state,
                'truncated', 0}
local letter_id = dead_letter(KEYS[5], 'no_verdict', ARGV[2], tool, fields, now,
                              tonumber(ARGV[7]), tonumber(ARGV[8]))
redis.call('HDEL', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[3], 'd', 0, 'reason', 'no_verdict', 'entry', letter_id, 'seq', 0,
           'detail', detail, 'at', now)
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[6]))
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[6], 'quarantined:no_verdict:' .. (tool ~= '' and tool or 'unknown'), 1)
return {'reaped', letter_id}
