--[[
  Start a run: acquire its lease and write its prompt as inbox entry 1 in the same step, so no
  callback can ever be entry 1 of a run.

  Input:
    KEYS[1] fence counter   <ns>:{<shard>}:{<sk>}:fence
    KEYS[2] owner pointer   <ns>:{<shard>}:{<sk>}:owner
    KEYS[3] run record      <ns>:{<shard>}:{<sk>}:run:<run id>
    KEYS[4] inbox           <ns>:{<shard>}:{<sk>}:run:<run id>:inbox

    ARGV[1..7] as acquire-3.lua: run key prefix, session key, run id, ttl (ms), policy,
               retention (ms), incarnation
    ARGV[8] prompt body (msgpack)

  Output (as acquire-3.lua, plus the prompt's inbox entry id; codes as leasegate.ownership.ErrorCode):
     {0, fence, expires_at_ms, now_ms, previous_run_id or '', previous_fence or 0, entry id}
    {-1, holder_run_id, holder_expires_at_ms, holder_state}    ERR_LEASE_HELD (exclusive only)
    {-3, incarnation of the existing record or ''}             ERR_RUN_EXISTS (run id taken)
]]
-- @durable: with LEASEGATE_MIN_REPLICAS, confirmed by WAIT before its reply counts
-- @include "now"
-- @include "runState"
-- @include "acquireRun"

local reply = acquire_run(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3],
                          tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]), ARGV[7])
if reply[1] ~= 0 then return reply end
local id = redis.call('XADD', KEYS[4], '*', 'seq', 1, 'role', 'user', 'kind', 'prompt',
                      'cb', '', 'body', ARGV[8], 'arts', '', 'tool', '', 'task', '',
                      'fence', reply[2], 'at', reply[4], 'sub', reply[4])
redis.call('PEXPIREAT', KEYS[4], reply[3] + tonumber(ARGV[6]))
reply[7] = id
return reply
