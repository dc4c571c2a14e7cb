-- Dead letters: one stream per shard (<ns>:{<shard>}:dlq) in arrival order, a hash per letter
-- (<ns>:{<shard>}:dlq:letter:<id>) with the full record and its history, sorted-set indexes by reason,
-- session key, tool, kind and held state (score: quarantined ms) for filtered listing, and counters
-- (<ns>:{<shard>}:dlq:stats). dead_letters is '<ns>:{<shard>}:dlq': the stream's key, and the prefix of the others.

local function letter_key(dead_letters, id) return dead_letters .. ':letter:' .. id end

local function index_keys(dead_letters, reason, sk, tool, kind, state)
  local keys = {dead_letters .. ':idx:reason:' .. reason}
  if sk and sk ~= '' then keys[#keys + 1] = dead_letters .. ':idx:sk:' .. sk end
  if tool and tool ~= '' then keys[#keys + 1] = dead_letters .. ':idx:tool:' .. tool end
  if kind and kind ~= '' then keys[#keys + 1] = dead_letters .. ':idx:kind:' .. kind end
  if state and state ~= '' then keys[#keys + 1] = dead_letters .. ':idx:state:' .. state end
  return keys
end

-- Append one state change to a letter's history (RabbitMQ x-death in spirit).
local function add_history(dead_letters, key, state, now, by, note)
  local raw = redis.call('HGET', key, 'history')
  local history = raw and cjson.decode(raw) or {}
  history[#history + 1] = {state = state, at = now, by = by, note = note}
  redis.call('HSET', key, 'state', state, 'updated', now, 'history', cjson.encode(history))
  redis.call('HINCRBY', dead_letters .. ':stats', 'state:' .. state, 1)
end

-- An expired or overflowed letter becomes a tombstone: record and history kept, payload gone,
-- out of the stream and the indexes, counted. Never a silent drop.
local function tombstone(dead_letters, id, cause, now, keep_ms)
  local key = letter_key(dead_letters, id)
  local f = redis.call('HMGET', key, 'reason', 'sk', 'tool', 'state', 'kind')
  if f[4] then
    redis.call('HINCRBY', dead_letters .. ':stats', 'state:' .. f[4], -1)
    redis.call('HDEL', key, 'body', 'raw', 'arts')
    add_history(dead_letters, key, 'expired', now, 'retention', cause)
    redis.call('PEXPIRE', key, keep_ms)
    for _, idx in ipairs(index_keys(dead_letters, f[1], f[2], f[3], f[5], f[4])) do
      redis.call('ZREM', idx, id)
    end
  end
  redis.call('XDEL', dead_letters, id)
  redis.call('HINCRBY', dead_letters .. ':stats', 'expired:' .. cause, 1)
end

-- Trim by age and count, oldest first, a bounded amount of work per call (Sidekiq trims its
-- dead set in the same transaction that adds to it).
local function sweep(dead_letters, now, max_age_ms, max_len, limit)
  for _ = 1, limit do
    local first = redis.call('XRANGE', dead_letters, '-', '+', 'COUNT', 1)
    if #first == 0 then return end
    local id = first[1][1]
    local born = tonumber(string.match(id, '^(%d+)'))
    local cause
    if redis.call('XLEN', dead_letters) > max_len then cause = 'overflow'
    elseif born + max_age_ms <= now then cause = 'age'
    else return end
    tombstone(dead_letters, id, cause, now, max_age_ms)
  end
end

-- Quarantine one item. fields: flat list of letter fields (without id/state/history).
-- Returns the dead-letter id.
-- A letter id is a stream id '<ms>-<seq>' whose seq is its shard modulo SHARDS, so the id alone
-- names the shard that holds it (no lookup across shards). The shard's number leads its hash tag.
-- Every seq starts at SEQ_BASE (a multiple of SHARDS): the seqs of one ms have the same number of
-- digits, so ids sort as text (an index's ties) the way they sort as numbers (the stream).
local SHARDS = 32
local SEQ_BASE = 1000000
local function next_letter_id(dead_letters, now)
  local seq = SEQ_BASE + tonumber(string.match(dead_letters, ':{(%d+)%.'))
  local ms = now
  local last = redis.call('HGET', dead_letters .. ':stats', 'last_id')
  if last then
    local last_ms, last_seq = string.match(last, '^(%d+)-(%d+)$')
    if tonumber(last_ms) >= now then ms, seq = tonumber(last_ms), tonumber(last_seq) + SHARDS end
  end
  local id = string.format('%d-%d', ms, seq)
  redis.call('HSET', dead_letters .. ':stats', 'last_id', id)
  return id
end

local function dead_letter(dead_letters, reason, sk, tool, fields, now, max_age_ms, max_len)
  local id = redis.call('XADD', dead_letters, next_letter_id(dead_letters, now), 'reason', reason,
                        'sk', sk or '', 'tool', tool or '')
  local key = letter_key(dead_letters, id)
  redis.call('HSET', key, 'id', id, 'reason', reason, 'sk', sk or '', 'tool', tool or '',
             'quarantined', now, unpack(fields))
  add_history(dead_letters, key, 'quarantined', now, 'gate', reason)
  -- no TTL while quarantined: only sweep() retires a letter, and never without a tombstone
  local kind = redis.call('HGET', key, 'kind')
  for _, idx in ipairs(index_keys(dead_letters, reason, sk, tool, kind, 'quarantined')) do
    redis.call('ZADD', idx, now, id)
  end
  redis.call('HINCRBY', dead_letters .. ':stats', 'reason:' .. reason, 1)
  redis.call('HINCRBY', dead_letters .. ':stats', 'total', 1)
  sweep(dead_letters, now, max_age_ms, max_len, 16)
  return id
end

-- Retire a held letter by hand (discard, purge): like tombstone(), but the new state and who
-- asked are the caller's. Returns the state it had, or false if it was not held (gone or
-- already a tombstone).
local function retire(dead_letters, id, state, now, by, note, keep_ms)
  local key = letter_key(dead_letters, id)
  local f = redis.call('HMGET', key, 'reason', 'sk', 'tool', 'state', 'kind')
  if not f[4] or f[4] == 'expired' or f[4] == 'discarded' then return false end
  redis.call('HINCRBY', dead_letters .. ':stats', 'state:' .. f[4], -1)
  redis.call('HDEL', key, 'body', 'raw', 'arts')
  add_history(dead_letters, key, state, now, by, note)
  redis.call('PEXPIRE', key, keep_ms)
  for _, idx in ipairs(index_keys(dead_letters, f[1], f[2], f[3], f[5], f[4])) do
    redis.call('ZREM', idx, id)
  end
  redis.call('XDEL', dead_letters, id)
  return f[4]
end

-- Move a held letter to another held state (redelivered, archived): it stays in the stream and
-- the indexes, so operators still find it; the per-state counters and indexes follow.
local function change_state(dead_letters, key, from, to, now, by, note)
  redis.call('HINCRBY', dead_letters .. ':stats', 'state:' .. from, -1)
  add_history(dead_letters, key, to, now, by, note)
  local f = redis.call('HMGET', key, 'id', 'quarantined')
  redis.call('ZREM', dead_letters .. ':idx:state:' .. from, f[1])
  redis.call('ZADD', dead_letters .. ':idx:state:' .. to, f[2], f[1])
end
