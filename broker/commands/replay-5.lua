--[[
  Redeliver one quarantined dead letter into a live or parked run of the same session key, as
  a recovered tool result (role=tool, kind=recovered: never role=user). The letter stays in
  the stream and the indexes, now 'redelivered', so it can never be replayed twice.

  Input:
    KEYS[1] dead letters   <ns>:{<shard>}:dlq                            (stream; also <ns>:{<shard>}:dlq:stats)
    KEYS[2] letter         <ns>:{<shard>}:dlq:letter:<dead-letter id>
    KEYS[3] target run     <ns>:{<shard>}:{<sk>}:run:<run id>
    KEYS[4] target inbox   <ns>:{<shard>}:{<sk>}:run:<run id>:inbox      (stream)
    KEYS[5] target resume  <ns>:{<shard>}:{<sk>}:run:<run id>:resume     (list)

    ARGV[1] dead-letter id   ARGV[2] target session key   ARGV[3] target run id
    ARGV[4] by (who)         ARGV[5] request id ('' for none): a client's retry of this
                             same request is answered as its first call was

  Output:
     {0, inbox entry id, seq, target state 'live' | 'parked'}   also to a repeat of the
                                     request that redelivered it (a retry after a lost reply)
     {-4, ''}                        ERR_LETTER_NOT_FOUND: no such letter, not even a tombstone
     {-6, run id it went to}         ERR_ALREADY_REDELIVERED: replayed before
     {-7, state}                     ERR_NOT_QUARANTINED: 'archived' | 'expired' | 'discarded'
     {-8, reason | 'truncated'}      ERR_NO_PAYLOAD: malformed / bad_signature input, or a
                                     body too large to keep: nothing trustworthy to hand over
     {-9, the letter's session key}  ERR_WRONG_SESSION: the target runs another session key
    {-10, effective state}           ERR_TARGET_NOT_ALIVE: 'expired' | 'released' |
                                     'superseded' | 'unknown'
    {-11, ''}                        ERR_NO_INBOX: the target has no inbox (it was not started
                                     with a prompt); entry 1 is never anything but a prompt
]]
-- @include "now"
-- @include "runState"
-- @include "deadLetter"

local now = now_ms()
local f = redis.call('HMGET', KEYS[2], 'state', 'reason', 'sk', 'run', 'fence', 'cb', 'body',
                     'arts', 'tool', 'task', 'submitted', 'truncated', 'kind', 'to_run',
                     'req', 'to_entry', 'to_seq', 'to_state')
local state, reason = f[1], f[2]
if not state then return {-4, ''} end
if state == 'redelivered' then
  if ARGV[5] ~= '' and f[15] == ARGV[5] then return {0, f[16], tonumber(f[17]), f[18]} end
  return {-6, f[14] or ''}
end
if state ~= 'quarantined' then return {-7, state} end
if reason == 'malformed' or reason == 'bad_signature' or not f[7] then return {-8, reason} end
if tonumber(f[12] or '0') > 0 then return {-8, 'truncated'} end
if f[3] ~= ARGV[2] then return {-9, f[3]} end

local rec = redis.call('HMGET', KEYS[3], 'state', 'exp', 'fence')
local target = effective_state(rec[1], rec[2], now)
if target ~= 'live' and target ~= 'parked' then return {-10, target} end

local seq = redis.call('XLEN', KEYS[4]) + 1
if seq == 1 then return {-11, ''} end
local id = redis.call('XADD', KEYS[4], '*', 'seq', seq, 'role', 'tool', 'kind', 'recovered',
                      'cb', f[6] or '', 'body', f[7], 'arts', f[8] or '', 'tool', f[9] or '',
                      'task', f[10] or '', 'fence', rec[3], 'at', now, 'sub', f[11] or '',
                      'dlq', ARGV[1], 'orig_run', f[4] or '', 'orig_fence', f[5] or '',
                      'orig_kind', f[13] or '')
if target == 'parked' then
  redis.call('RPUSH', KEYS[5], f[6] or '')
  redis.call('PEXPIRE', KEYS[5], redis.call('PTTL', KEYS[3]))
end

redis.call('HSET', KEYS[2], 'to_run', ARGV[3], 'to_entry', id, 'to_seq', seq,
           'to_state', target, 'req', ARGV[5])
change_state(KEYS[1], KEYS[2], 'quarantined', 'redelivered', now, ARGV[4], ARGV[3])
return {0, id, seq, target}
