-- Acquire a new run of a session key. Shared by acquire-3.lua and the broker's start-run script.
-- fence_key, owner_key, run_key: the session's counter, owner pointer and the new run record.
-- incarnation: the caller's random nonce for this acquire; a run id and fence can come back
-- after Redis loses data, an incarnation never does.
-- Needs now.lua and runState.lua. Returns one of (codes as leasegate.ownership.ErrorCode):
--    {0, fence, exp_ms, now_ms, prev_run_id, prev_fence}   acquired
--   {-1, holder, holder_exp_ms, holder_state}              ERR_LEASE_HELD (exclusive only)
--   {-3, incarnation of the existing record or ''}         ERR_RUN_EXISTS (run id taken)
local function acquire_run(fence_key, owner_key, run_key, run_prefix, session_key, run_id,
                           ttl_ms, policy, retention_ms, incarnation)
  local now = now_ms()
  if redis.call('EXISTS', run_key) == 1 then
    return {-3, redis.call('HGET', run_key, 'inc') or ''}
  end
  local prev_id = redis.call('GET', owner_key)
  local prev_fence = 0
  local expired_at = nil
  if prev_id then
    -- run_prefix .. prev_id is in the same hash slot: every key of a session shares its tag
    local prev_key = run_prefix .. prev_id
    local prev = redis.call('HMGET', prev_key, 'state', 'exp', 'fence')
    local prev_state = effective_state(prev[1], prev[2], now)
    if prev_state == 'live' or prev_state == 'parked' then
      if policy == 'exclusive' then return {-1, prev_id, tonumber(prev[2]), prev_state} end
      prev_fence = tonumber(prev[3])
    else
      -- expired only by the clock: store it, so a clock step back cannot revive the run
      if prev_state == 'expired' and prev[1] ~= 'expired' then expired_at = prev[2] end
      prev_id = false
    end
  end
  local fence = redis.call('INCR', fence_key)
  if prev_id then
    redis.call('HSET', run_prefix .. prev_id, 'state', 'superseded', 'by_run', run_id,
               'by_fence', fence, 'ended', now, 'updated', now)
  elseif expired_at then
    redis.call('HSET', run_prefix .. redis.call('GET', owner_key), 'state', 'expired',
               'ended', expired_at, 'updated', now)
  end
  local exp = now + ttl_ms
  redis.call('HSET', run_key, 'sk', session_key, 'run', run_id, 'fence', fence, 'state', 'live',
             'ttl', ttl_ms, 'exp', exp, 'created', now, 'updated', now, 'inc', incarnation)
  redis.call('PEXPIREAT', run_key, exp + retention_ms)
  redis.call('SET', owner_key, run_id, 'PXAT', exp + retention_ms)
  return {0, fence, exp, now, prev_id or '', prev_fence}
end
