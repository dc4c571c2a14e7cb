--[[
  Quarantine bytes that never decoded into a trustworthy envelope (malformed, bad signature).
  Nothing in them can be trusted to name a run, so they can only go to the dead letters.

  Input:
    KEYS[1] dead letters   <ns>:{<shard>}:dlq                       (stream; also touches <ns>:{<shard>}:dlq:*)
    KEYS[2] raw memo       <ns>:{<shard>}:dlq:raw:<sha256 of the raw bytes>  (one letter per distinct input)
    KEYS[3] counters       <ns>:{<shard>}:metrics   (quarantined:<reason>:unverified)

    ARGV[1] reason 'malformed' | 'bad_signature'   ARGV[2] detail (the decoder's message)
    ARGV[3] raw bytes (already capped)              ARGV[4] raw size before capping
    ARGV[5] dead-letter max age (ms)                ARGV[6] dead-letter max count
    ARGV[7] claimed session key ('' if unreadable)  ARGV[8] claimed tool ('' if unreadable)
    ARGV[9] task id ('' if unknown)

  Output: {0, reason, dead-letter id, 0, repeat 1|0, detail}
]]
-- @durable: with LEASEGATE_MIN_REPLICAS, confirmed by WAIT before its reply counts
-- @include "now"
-- @include "deadLetter"

local now = now_ms()
local seen = redis.call('GET', KEYS[2])
if seen then return {0, ARGV[1], seen, 0, 1, ARGV[2]} end

-- a claimed session key or tool is unverified, so it goes in the record, not in the indexes
local fields = {'detail', ARGV[2], 'raw', ARGV[3], 'raw_size', ARGV[4], 'completed', now,
                'claimed_sk', ARGV[7], 'claimed_tool', ARGV[8], 'task', ARGV[9]}
local id = dead_letter(KEYS[1], ARGV[1], '', '', fields, now, tonumber(ARGV[5]),
                       tonumber(ARGV[6]))
redis.call('SET', KEYS[2], id, 'PX', tonumber(ARGV[5]))
-- never a claimed tool as a label: untrusted input must not pick metric names
redis.call('HINCRBY', KEYS[3], 'quarantined:' .. ARGV[1] .. ':unverified', 1)
return {0, ARGV[1], id, 0, 0, ARGV[2]}
