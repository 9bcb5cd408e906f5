#!lua flags=allow-oom
-- queue_delete.lua: delete a work queue with its SCHEDULED runs, keeping its history.
-- KEYS[1] config         HASH   the queue's settings
-- KEYS[2] active         ZSET   run id -> lease deadline: runs in flight refuse the delete
-- KEYS[3] scheduled      ZSET   run id -> due time (ms)
-- KEYS[4] ready          STREAM released runs
-- KEYS[5] agents         ZSET   agent id -> last poll (ms)
-- KEYS[6] waiters        ZSET   idle agent id -> registration deadline (ms)
-- KEYS[7] runs           ZSET   run id -> creation time (ms): the history kept
-- KEYS[8] done           ZSET   run id -> end time (ms)
-- KEYS[9] idempotency    HASH   idempotency key -> run id
-- KEYS[10] names_index   ZSET   runs by name
-- KEYS[11] ended_index   HASH   what the purge of an ended run must remove
-- KEYS[12] wake          channel "deleted" to the queue's agents
-- KEYS[13] events        channel "queue" (watchers)
-- KEYS[14] run_prefix    slot-sharing prefix of the run records (the runs are read from
--                        the schedule and the stream)
-- KEYS[15] index_prefix  slot-sharing prefix of the listing indexes (named by the state,
--                        deployment and flow a record holds)
-- KEYS[16] auto_prefix   slot-sharing prefix of the deployments' schedule-made sets
--                        (named by the deployment a record holds)
-- ARGV[1] name    the queue's name (for the errors)
-- Includes: basics, runs, purge, wake, event
-- Reply: {queue id, runs kept (count), ids of the SCHEDULED runs deleted...}
-- Errors: QUEUE_NOT_FOUND <name>, QUEUE_BUSY <active count> <name>
-- Goes: the config, the schedule and the ready stream with the SCHEDULED runs in them
-- (records, logs, history, index entries, idempotency keys), the deployments' auto sets,
-- the agents and the waiters. Stays, until the sweep purges it after the retention time
-- (the caller lists the name in the retired set): every terminal run with its record,
-- logs, history, index entries, idempotency key and its place in `runs` and `done`, so
-- it stays readable by id and listed. Runs in flight (PENDING, RUNNING, CANCELLING) refuse
-- the delete, forced or not: their owners still write to them.
-- Cost grows with the queue's waiting runs, not with its history.
-- Runs under full memory: it only removes.

local id = redis.call('HGET', K_CONFIG, 'id')
if not id then
  return fail('QUEUE_NOT_FOUND', ARGV[1])
end
local active = redis.call('ZCARD', K_ACTIVE)
if active > 0 then
  return fail('QUEUE_BUSY', tostring(active) .. ' ' .. ARGV[1])
end

-- A waiting run is in the schedule, or in the stream (released, not yet delivered).
local waiting = redis.call('ZRANGE', K_SCHEDULED, 0, -1)
for _, entry in ipairs(redis.call('XRANGE', K_READY, '-', '+')) do
  table.insert(waiting, entry[2][2])
end
local deleted, autos, seen = {}, {}, {}
for _, run_id in ipairs(waiting) do
  local run = run_keys(run_id)
  local facts = redis.call('HMGET', run.key, 'st', 'auto', 'dep')
  if not seen[run_id] and facts[1] == 'SCHEDULED' then
    seen[run_id] = true
    if facts[2] and facts[3] then
      autos[K_AUTO_PREFIX .. facts[3]] = true
    end
    purge_run(run)  -- record, logs, history, index entries, idempotency key
    table.insert(deleted, run_id)
  end
end
for key in pairs(autos) do
  redis.call('DEL', key)
end
redis.call('DEL', K_CONFIG, K_SCHEDULED, K_READY, K_ACTIVE, K_AGENTS, K_WAITERS)
local kept = redis.call('ZCARD', K_RUNS)
if kept == 0 then  -- no history: nothing for the sweep to purge later
  redis.call('DEL', K_DONE, K_IDEMPOTENCY)
end
broadcast('deleted')
event('queue')
local reply = {id, kept}
for _, run_id in ipairs(deleted) do
  table.insert(reply, run_id)
end
return reply
