#!lua flags=allow-oom
-- limit_delete.lua: delete a named concurrency limit; its waiting runs go back to their
-- queues (nothing holds them any more).
-- KEYS[1] config         HASH   the limit's settings
-- KEYS[2] values         SET    the values with holders or waiting runs
-- KEYS[3] value_prefix   slot-sharing prefix of the per-value keys (named by the
--                        values the SET holds: value_prefix .. kind .. ':' .. value)
-- ARGV[1] name           the limit's name (for the error)
-- Includes: basics
-- Reply: {run, queue, ...} the runs that waited, to send back to their queues
-- Errors: LIMIT_NOT_FOUND <name>

if redis.call('EXISTS', K_CONFIG) == 0 then
  return fail('LIMIT_NOT_FOUND', ARGV[1])
end
local send = {}
for _, value in ipairs(redis.call('SMEMBERS', K_VALUES)) do
  local where = K_VALUE_PREFIX .. 'where:' .. value
  for _, run_id in ipairs(redis.call('ZRANGE', K_VALUE_PREFIX .. 'waiting:' .. value, 0, -1)) do
    send[#send + 1], send[#send + 2] = run_id, redis.call('HGET', where, run_id) or ''
  end
  for _, kind in ipairs({'holders', 'claims', 'waiting', 'notified', 'where', 'starts'}) do
    redis.call('DEL', K_VALUE_PREFIX .. kind .. ':' .. value)
  end
end
redis.call('DEL', K_CONFIG, K_VALUES)
return send
