#!lua flags=allow-oom
-- runs_unschedule.lua: remove the SCHEDULED runs a deployment's schedule made on a queue.
-- KEYS[1] auto           ZSET   the runs the deployment's schedule made on this queue
-- KEYS[2] scheduled      ZSET   run id -> due time (ms)
-- KEYS[3] runs           ZSET   run id -> creation time (ms)
-- KEYS[4] done           ZSET   run id -> end time (ms)
-- KEYS[5] idempotency    HASH   idempotency key -> run id
-- KEYS[6] names_index    ZSET   runs by name
-- KEYS[7] ended_index    HASH   what the purge of an ended run must remove
-- KEYS[8] events         channel every change of a run (watchers)
-- KEYS[9] run_prefix     slot-sharing prefix of the run records (the runs are read from
--                        the deployment's set)
-- KEYS[10] index_prefix  slot-sharing prefix of the listing indexes (named by the state,
--                        deployment and flow a record holds)
-- KEYS[11] auto_prefix   slot-sharing prefix of the deployments' schedule-made sets (the
--                        purge names the set by the deployment a record holds)
-- ARGV: none (the deployment is named by KEYS[1])
-- Includes: runs, purge, event
-- Reply: the ids of the runs deleted
-- Called when a schedule is changed, cleared or paused, or the deployment moves queue:
-- runs already claimed (PENDING or later) are never touched. Cost grows with the
-- deployment's schedule-made runs on this queue (at most the scheduler's horizon).
-- Runs under full memory: it only removes.

local deleted = {}
for _, run_id in ipairs(redis.call('ZRANGE', K_AUTO, 0, -1)) do
  local run = run_keys(run_id)
  if redis.call('HGET', run.key, 'st') == 'SCHEDULED' then
    purge_run(run)  -- record, logs, history, index entries, idempotency key
    event('deleted ' .. run_id)
    table.insert(deleted, run_id)
  end
end
redis.call('DEL', K_AUTO)
return deleted
