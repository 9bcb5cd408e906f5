#!lua flags=allow-oom
-- queue_delete.lua: delete a work queue with its runs.
-- KEYS: the queue keys listed in _common.lua
-- ARGV[1] force   "1" deletes even while runs are PENDING or RUNNING
-- ARGV[2] name    the queue's name (for the errors)
-- Reply: {queue id, run ids deleted...}
-- Errors: QUEUE_NOT_FOUND, QUEUE_BUSY <active count> <name>
-- Cost grows with the queue's run records, which retention bounds.

local id = redis.call('HGET', K_CONFIG, 'id')
if not id then
  return fail('QUEUE_NOT_FOUND', ARGV[2])
end
local active = redis.call('ZCARD', K_ACTIVE)
if active > 0 and ARGV[1] ~= '1' then
  return fail('QUEUE_BUSY', tostring(active) .. ' ' .. ARGV[2])
end
local run_ids = redis.call('ZRANGE', K_RUNS, 0, -1)
local auto_indexes = {}
for _, run_id in ipairs(run_ids) do
  local run = redis.call('HMGET', K_RUN .. run_id, 'auto', 'dep')
  if run[1] then
    auto_indexes[auto_key(run[2])] = true
  end
end
for index in pairs(auto_indexes) do
  redis.call('UNLINK', index)
end
for i = 1, #run_ids, 250 do
  local batch = {}
  for j = i, math.min(i + 249, #run_ids) do
    table.insert(batch, K_RUN .. run_ids[j])
    table.insert(batch, K_RUN .. run_ids[j] .. ':logs')
  end
  redis.call('UNLINK', unpack(batch))
end
redis.call('UNLINK', K_CONFIG, K_SCHEDULED, K_READY, K_ACTIVE, K_RUNS, K_DONE, K_IDEM, K_AGENTS)
publish('deleted')
table.insert(run_ids, 1, id)
return run_ids
