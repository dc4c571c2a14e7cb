--[[
  Add held dead letters to the kind and state indexes: for letters quarantined by a version
  that did not index them (an upgrade). Idempotent: a letter already indexed is added again
  with the same score. Each letter is read and indexed in this one step, so a state change
  cannot slip in between.

  Input:
    KEYS[1] dead letters  <ns>:{<shard>}:dlq                  (stream; also <ns>:{<shard>}:dlq:letter:*, idx:*)
    ARGV[1..] dead-letter ids

  Output: the number of held letters indexed
]]

local held = {quarantined = true, redelivered = true, archived = true}
local done = 0
for i = 1, #ARGV do
  local f = redis.call('HMGET', KEYS[1] .. ':letter:' .. ARGV[i], 'state', 'kind', 'quarantined')
  if f[1] and held[f[1]] and f[3] then
    redis.call('ZADD', KEYS[1] .. ':idx:state:' .. f[1], f[3], ARGV[i])
    if f[2] and f[2] ~= '' then
      redis.call('ZADD', KEYS[1] .. ':idx:kind:' .. f[2], f[3], ARGV[i])
    end
    done = done + 1
  end
end
return done
