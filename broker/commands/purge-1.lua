--[[
  Discard a batch of dead letters chosen by the caller, re-checking each against the filter
  here, on server time, so that a letter that changed since it was chosen is left alone.

  Input:
    KEYS[1] dead letters  <ns>:dlq                  (stream; also <ns>:dlq:letter:*, idx:*, stats)

    ARGV[1] by (who)      ARGV[2] tombstone ttl (ms)
    ARGV[3] older than (ms; '' for any age)
    ARGV[4] reason ('' for any)   ARGV[5] session key ('' for any)   ARGV[6] tool ('' for any)
    ARGV[7] request id ('' for none)   ARGV[8..] dead-letter ids

  Output: {dead-letter id, ...} the ids discarded (held letters that still matched), and
          those this same request discarded already: a client's retry after a lost reply
          reports what the first call did
]]
-- @include "now"
-- @include "deadLetter"

local now = now_ms()
local cutoff = ARGV[3] ~= '' and now - tonumber(ARGV[3]) or nil
local wanted = {reason = ARGV[4], sk = ARGV[5], tool = ARGV[6]}
local done = {}
for i = 8, #ARGV do
  local id = ARGV[i]
  local key = letter_key(KEYS[1], id)
  local f = redis.call('HMGET', key, 'reason', 'sk', 'tool', 'quarantined', 'state', 'req')
  local match = f[4] ~= false and (not cutoff or tonumber(f[4]) <= cutoff)
  for n, field in ipairs({'reason', 'sk', 'tool'}) do
    if wanted[field] ~= '' and f[n] ~= wanted[field] then match = false end
  end
  if f[5] == 'discarded' and ARGV[7] ~= '' and f[6] == ARGV[7] then
    done[#done + 1] = id
  elseif match and retire(KEYS[1], id, 'discarded', now, ARGV[1], 'purge',
                          tonumber(ARGV[2])) then
    redis.call('HSET', key, 'req', ARGV[7])
    done[#done + 1] = id
  end
end
return done
