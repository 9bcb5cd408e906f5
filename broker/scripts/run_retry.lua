#!lua
-- run_retry.lua: the operator's retry of an ended flow run (Prefect UI's Retry button).
-- KEYS: the queue keys listed in _common.lua
-- ARGV[1] run_id
-- ARGV[2] message        why, for people ("retried by an operator")
-- ARGV[3] queue_name     the queue's name (for the error)
-- Reply: the run HASH as a flat array
-- Errors: RUN_NOT_FOUND <id>, BAD_TRANSITION <id> <current> SCHEDULED,
--         QUEUE_NOT_FOUND <name> (the queue was deleted: a run SCHEDULED there would wait
--         on a queue nobody lists; Broker.retry_flow_run re-creates it first)
-- A FAILED, CRASHED or CANCELLED run goes back to SCHEDULED, due now (Redis' clock),
-- its record, logs and history live again (no expiry, no purge). The run count is not
-- touched here: it counts attempts that ran, so the retried attempt adds 1 when it is
-- RUNNING (as every attempt does) and never twice.
-- No fencing token: an ended run has no owner.

local run_id, message, queue_name = ARGV[1], ARGV[2], ARGV[3]
local retryable = {FAILED = true, CRASHED = true, CANCELLED = true}
local run_key, current = run_in_state(run_id, retryable, 'SCHEDULED')
if not run_key then
  return current  -- the error reply
end
if redis.call('EXISTS', K_CONFIG) == 0 then
  return fail('QUEUE_NOT_FOUND', queue_name)
end
local now_us, now_ms = clock()
redis.call('HSET', run_key, 'due', str(now_ms))  -- the first write: refused whole under full memory
redis.call('HDEL', run_key, 'result')
requeue(run_id, run_key, 'Scheduled', message, now_ms, now_us)
return redis.call('HGETALL', run_key)
