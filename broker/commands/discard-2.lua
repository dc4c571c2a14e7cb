--[[
  Discard one dead letter by hand: it becomes a 'discarded' tombstone (record and history kept
  for max-age, payload, raw bytes and artifact references dropped), out of the stream and the
  indexes. Whatever artifacts only it referenced become collectable.

  Input:
    KEYS[1] dead letters  <ns>:{<shard>}:dlq                  (stream; also <ns>:{<shard>}:dlq:idx:*, <ns>:{<shard>}:dlq:stats)
    KEYS[2] letter        <ns>:{<shard>}:dlq:letter:<dead-letter id>

    ARGV[1] dead-letter id   ARGV[2] by (who)   ARGV[3] tombstone ttl (ms)   ARGV[4] note
    ARGV[5] request id ('' for none): a client's retry of this same request is answered as
            its first call was

  Output:
     {0, state it had}  discarded (also to a repeat of the request that discarded it)
    {-4, ''}            ERR_LETTER_NOT_FOUND: no such letter, not even a tombstone
    {-5, state}         ERR_LETTER_GONE: already a tombstone, 'expired' | 'discarded'
]]
-- @include "now"
-- @include "deadLetter"

local now = now_ms()
local f = redis.call('HMGET', KEYS[2], 'state', 'req', 'req_had')
local state = f[1]
if not state then return {-4, ''} end
if state == 'discarded' and ARGV[5] ~= '' and f[2] == ARGV[5] then return {0, f[3]} end
local had = retire(KEYS[1], ARGV[1], 'discarded', now, ARGV[2], ARGV[4], tonumber(ARGV[3]))
if not had then return {-5, state} end
redis.call('HSET', KEYS[2], 'req', ARGV[5], 'req_had', had)
return {0, had}
