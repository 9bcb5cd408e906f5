-- release.lua: give up a run's slot and its stream entry.
-- Needs KEYS: active, ready
-- Includes: basics

-- The slot (1 when it held one) and the entry, acknowledged then deleted ("trimmed").
local function release(run)
  local freed = redis.call('ZREM', K_ACTIVE, run.id)
  local entry = redis.call('HGET', run.key, 'entry')
  if entry then
    redis.call('XACK', K_READY, GROUP, entry)
    redis.call('XDEL', K_READY, entry)
    redis.call('HDEL', run.key, 'entry')
  end
  return freed
end
