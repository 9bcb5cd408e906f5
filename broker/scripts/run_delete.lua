#!lua flags=allow-oom
-- run_delete.lua: delete a flow run that is not in flight, with its logs and history.
-- KEYS: the queue keys listed in _common.lua
-- ARGV[1] run_id
-- Reply: the state type the run had
-- Errors: RUN_NOT_FOUND <id>, BAD_TRANSITION <id> <current> DELETED (PENDING, RUNNING,
--         CANCELLING: cancel it first)
-- Removes the record and every index entry of the run (state, deployment, flow, name,
-- schedule, idempotency key) and publishes "deleted ID" on the events channel. A stream
-- entry of a SCHEDULED run already released to agents is dropped by the next claim.
-- Runs under full memory: it only removes.

local run_id = ARGV[1]
local deletable = {SCHEDULED = true, COMPLETED = true, FAILED = true, CANCELLED = true,
                   CRASHED = true}
local run_key, current = run_in_state(run_id, deletable, 'DELETED')
if not run_key then
  return current  -- the error reply
end
purge_run(run_id, run_key)
event('deleted ' .. run_id)
return current
