--[[
  Acquire a lease for a new run of a session key and give it the next fencing token.

  Input:
    KEYS[1] fence counter    <ns>:{<shard>}:{<sk>}:fence   (never expires: a reset would let an old token match)
    KEYS[2] owner pointer    <ns>:{<shard>}:{<sk>}:owner   (run id of the latest run)
    KEYS[3] run record       <ns>:{<shard>}:{<sk>}:run:<run id>

    ARGV[1] run key prefix   <ns>:{<shard>}:{<sk>}:run:    (to reach the previous owner's record, same slot)
    ARGV[2] session key
    ARGV[3] run id
    ARGV[4] ttl (ms)
    ARGV[5] policy           'supersede' | 'exclusive'
    ARGV[6] retention (ms)   how long records stay readable after the run ends
    ARGV[7] incarnation      random nonce of this acquire (32 hex), stored as the record's 'inc'

  Output (codes as leasegate.ownership.ErrorCode):
     {0, fence, expires_at_ms, now_ms, previous_run_id or '', previous_fence or 0}   acquired
    {-1, holder_run_id, holder_expires_at_ms, holder_state}    ERR_LEASE_HELD (exclusive only)
    {-3, incarnation of the existing record or ''}             ERR_RUN_EXISTS (run id taken)
]]
-- @durable: with LEASEGATE_MIN_REPLICAS, confirmed by WAIT before its reply counts
-- @include "now"
-- @include "runState"
-- @include "acquireRun"

return acquire_run(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3],
                   tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]), ARGV[7])
