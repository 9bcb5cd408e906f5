#!lua flags=allow-oom
-- runs_unschedule.lua: remove the SCHEDULED runs a deployment's schedule made on a queue.
-- KEYS: the queue keys listed in _common.lua
-- ARGV[1] deployment_id
-- Reply: the ids of the runs deleted
-- Called when a schedule is changed, cleared or paused, or the deployment moves queue:
-- runs already claimed (PENDING or later) are never touched. Cost grows with the
-- deployment's schedule-made runs on this queue (at most the scheduler's horizon).

local index = auto_key(ARGV[1])
local deleted = {}
for _, run_id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  local run_key = K_RUN .. run_id
  local run = redis.call('HMGET', run_key, 'st', 'ikey')
  if run[1] == 'SCHEDULED' then
    purge_run(run_id, run_key)  -- record, logs, history, index entries, idempotency key
    event('deleted ' .. run_id)
    table.insert(deleted, run_id)
  end
end
redis.call('DEL', index)
return deleted
