-- The gate's rule, shared by deliver-9.lua and check-4.lua so that a worker's pre-check can
-- never disagree with the delivery. Needs runState.lua.
-- A run is admitted when its record is live or parked, holds the envelope's fence and
-- incarnation (a nonce no Redis data loss can reissue), the session's owner pointer names it
-- (a stored state wrongly left live cannot win over the session's current owner), the deadline
-- has not passed, and it has an inbox.
-- Returns reason (nil: admitted), detail, the run's effective state, the inbox's length.
local function admission(run_key, owner_key, inbox_key, run_id, fence, incarnation, deadline,
                         now)
  local rec = redis.call('HMGET', run_key, 'state', 'exp', 'fence', 'outcome', 'by_run',
                         'by_fence', 'inc')
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
  elseif (rec[7] or '') ~= incarnation then
    return 'unknown_run', 'incarnation ' .. incarnation .. ' differs from the run\'s '
           .. (rec[7] or '(none)') .. ' (its record was lost and the run id reused)', state, 0
  end
  local owner = redis.call('GET', owner_key)
  if not owner then
    return 'unknown_run', 'the session has no owner pointer; run ' .. run_id
           .. ' does not own it', state, 0
  elseif owner ~= run_id then
    return 'superseded', 'the session\'s owner is run ' .. owner .. ', not run ' .. run_id,
           state, 0
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
