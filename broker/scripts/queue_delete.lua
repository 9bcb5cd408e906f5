#!lua flags=allow-oom
-- queue_delete.lua: delete a work queue with its SCHEDULED runs, keeping its history.
-- KEYS: the queue keys listed in _common.lua
-- ARGV[1] name    the queue's name (for the errors)
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
  local run_key = K_RUN .. run_id
  local run = redis.call('HMGET', run_key, 'st', 'auto', 'dep')
  if not seen[run_id] and run[1] == 'SCHEDULED' then
    seen[run_id] = true
    if run[2] and run[3] then
      autos[auto_key(run[3])] = true
    end
    purge_run(run_id, run_key)  -- record, logs, history, index entries, idempotency key
    table.insert(deleted, run_id)
  end
end
for key in pairs(autos) do
  redis.call('DEL', key)
end
redis.call('DEL', K_CONFIG, K_SCHEDULED, K_READY, K_ACTIVE, K_AGENTS, K_WAITERS)
local kept = redis.call('ZCARD', K_RUNS)
if kept == 0 then  -- no history: nothing for the sweep to purge later
  redis.call('DEL', K_DONE, K_IDEM)
end
publish('deleted')
event('queue')
local reply = {id, kept}
for _, run_id in ipairs(deleted) do
  table.insert(reply, run_id)
end
return reply
