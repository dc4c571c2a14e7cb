-- The gate's rule, shared by deliver-8.lua and check-3.lua so that a worker's pre-check can
-- never disagree with the delivery. Needs runState.lua.
-- Returns reason (nil: admitted), detail, the run's effective state, the inbox's length.
local function admission(run_key, inbox_key, run_id, fence, deadline, now)
  local rec = redis.call('HMGET', run_key, 'state', 'exp', 'fence', 'outcome', 'by_run',
                         'by_fence')
  local state = effective_state(rec[1], rec[2], now)
  if state == 'unknown' then
    return 'unknown_run', 'no record of run ' .. run_id, state, 0
  elseif state == 'expired' then
    return 'lease_expired', 'lease expired at ' .. rec[2], state, 0
  elseif state == 'released' then
    return 'run_released', 'released as ' .. (rec[4] or '?'), state, 0
  elseif state == 'superseded' then
    return 'superseded', 'superseded by run ' .. rec[5] .. ' with fence ' .. rec[6], state, 0
  elseif rec[3] ~= fence then
    return 'unknown_run', 'fence ' .. fence .. ' is not the run\'s fence ' .. rec[3], state, 0
  elseif now > deadline then
    return 'deadline_passed', 'deadline ' .. deadline .. ' passed at ' .. now, state, 0
  end
  local inbox_len = redis.call('XLEN', inbox_key)
  if inbox_len == 0 then
    -- a lease taken without start_run has no prompt: a callback must never become entry 1
    return 'unknown_run', 'run ' .. run_id .. ' has no inbox (not started with a prompt)',
           state, 0
  end
  return nil, '', state, inbox_len
end
