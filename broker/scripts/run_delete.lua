#!lua flags=allow-oom
-- run_delete.lua: delete a flow run that is not in flight, with its logs and history.
-- KEYS[1] run            HASH   the run's record
-- KEYS[2] logs           STREAM its log lines
-- KEYS[3] history        LIST   its state history
-- KEYS[4] scheduled      ZSET   run id -> due time (ms)
-- KEYS[5] runs           ZSET   run id -> creation time (ms)
-- KEYS[6] done           ZSET   run id -> end time (ms)
-- KEYS[7] idempotency    HASH   idempotency key -> run id
-- KEYS[8] names_index    ZSET   runs by name
-- KEYS[9] ended_index    HASH   what the purge of an ended run must remove
-- KEYS[10] events        channel every change of a run (watchers)
-- KEYS[11] index_prefix  slot-sharing prefix of the listing indexes (named by the state,
--                        deployment and flow the record holds)
-- KEYS[12] auto_prefix   slot-sharing prefix of the deployments' schedule-made sets
--                        (named by the deployment the record holds)
-- ARGV[1] run_id
-- Includes: run_in_state, purge, event
-- Reply: the state type the run had
-- Errors: RUN_NOT_FOUND <id>, BAD_TRANSITION <id> <current> DELETED (PENDING, RUNNING,
--         CANCELLING: cancel it first)
-- Removes the record and every index entry of the run (state, deployment, flow, name,
-- schedule, idempotency key) and publishes "deleted ID" on the events channel. A stream
-- entry of a SCHEDULED run already released to agents is dropped by the next claim.
-- Runs under full memory: it only removes.

local run = {id = ARGV[1], key = K_RUN, logs = K_LOGS, history = K_HISTORY}
local deletable = {SCHEDULED = true, COMPLETED = true, FAILED = true, CANCELLED = true,
                   CRASHED = true}
local current, refused = run_in_state(run, deletable, 'DELETED')
if not current then
  return refused
end
purge_run(run)
event('deleted ' .. run.id)
return current
