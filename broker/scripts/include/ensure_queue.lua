-- ensure_queue.lua: create a queue's config and stream group if it has none.
-- Needs KEYS: config, ready
-- Includes: basics

-- Returns 1 when the queue was created now, 0 when it existed.
local function ensure_queue(name, id, description, limit, now_us)
  if redis.call('EXISTS', K_CONFIG) == 1 then
    return 0
  end
  local fields = {'id', id, 'name', name, 'description', description,
                  'is_paused', '0', 'created', str(now_us), 'updated', str(now_us),
                  'generation', '0', 'indexed', '1'}
  if limit ~= '' then
    table.insert(fields, 'concurrency_limit')
    table.insert(fields, limit)
  end
  redis.call('HSET', K_CONFIG, unpack(fields))
  if redis.call('EXISTS', K_READY) == 0 then
    redis.call('XGROUP', 'CREATE', K_READY, GROUP, '0', 'MKSTREAM')
  end
  return 1
end
