--[[
  Settle one dead letter a drain consumer has handed over: a letter still quarantined becomes
  'archived'; either way the entry is acknowledged in the drain's consumer group. One step, so
  a crash leaves it either pending (handed over again) or archived and acknowledged.

  Input:
    KEYS[1] dead letters  <ns>:{<shard>}:dlq                  (stream; also <ns>:{<shard>}:dlq:stats)
    KEYS[2] letter        <ns>:{<shard>}:dlq:letter:<dead-letter id>

    ARGV[1] consumer group   ARGV[2] dead-letter id (= its stream entry id)   ARGV[3] by (who)
    ARGV[4] note (the consumer's name)
    ARGV[5] request id ('' for none): a client's retry of this same request is answered as
            its first call was

  Output:
    {1, 'archived'}   archived and acknowledged (also to a repeat of the request that did it)
    {0, state}        acknowledged only: the letter was no longer quarantined ('' if gone)
]]
-- @include "now"
-- @include "deadLetter"

local now = now_ms()
local f = redis.call('HMGET', KEYS[2], 'state', 'req')
local state = f[1]
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if state == 'archived' and ARGV[5] ~= '' and f[2] == ARGV[5] then return {1, 'archived'} end
if state ~= 'quarantined' then return {0, state or ''} end
change_state(KEYS[1], KEYS[2], 'quarantined', 'archived', now, ARGV[3], ARGV[4])
redis.call('HSET', KEYS[2], 'req', ARGV[5])
return {1, 'archived'}
