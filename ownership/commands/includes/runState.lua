-- Effective state of a run record: the stored state, with 'expired' derived from server time.
-- state: the record's 'state' field (false when the record is gone); exp: its 'exp' field (ms).
local function effective_state(state, exp, now)
  if not state then return 'unknown' end
  if (state == 'live' or state == 'parked') and now >= tonumber(exp) then return 'expired' end
  return state
end
