--[[
  Discard a batch of dead letters chosen by the caller, re-checking each against the filter
  here, on server time, so that a letter that changed since it was chosen is left alone.

  Input:
    KEYS[1] dead letters  <ns>:{<shard>}:dlq                  (stream; also <ns>:{<shard>}:dlq:letter:*, idx:*, stats)

    ARGV[1] by (who)      ARGV[2] tombstone ttl (ms)
    ARGV[3] older than (ms; '' for any age)
    ARGV[4] reason ('' for any)   ARGV[5] session key ('' for any)   ARGV[6] tool ('' for any)
    ARGV[7] kind ('' for any)     ARGV[8] held state ('' for any)
    ARGV[9] request id ('' for none)   ARGV[10..] dead-letter ids

  Output: {dead-letter id, ...} the ids discarded (held letters that still matched), and
          those this same request discarded already: a client's retry after a lost reply
          reports what the first call did
]]
-- @include "now"
-- @include "deadLetter"

local now = now_ms()
local cutoff = ARGV[3] ~= '' and now - tonumber(ARGV[3]) or nil
local wanted = {ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]}
local done = {}
for i = 10, #ARGV do
  local id = ARGV[i]
  local key = letter_key(KEYS[1], id)
  local f = redis.call('HMGET', key, 'reason', 'sk', 'tool', 'kind', 'state', 'quarantined',
                       'req')
  local match = f[6] ~= false and (not cutoff or tonumber(f[6]) <= cutoff)
  for n = 1, 5 do
    if wanted[n] ~= '' and f[n] ~= wanted[n] then match = false end
  end
  if f[5] == 'discarded' and ARGV[9] ~= '' and f[7] == ARGV[9] then
    done[#done + 1] = id
  elseif match and retire(KEYS[1], id, 'discarded', now, ARGV[1], 'purge',
                          tonumber(ARGV[2])) then
    redis.call('HSET', key, 'req', ARGV[9])
    done[#done + 1] = id
  end
end
return done
