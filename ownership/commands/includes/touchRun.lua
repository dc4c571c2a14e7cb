-- Give the run record and every companion key (inbox, resume signals, ...) one expiry time,
-- so that nothing of a run outlives its record.
local function touch_run(first, last, at_ms)
  for i = first, last do redis.call('PEXPIREAT', KEYS[i], at_ms) end
end
