#!lua
-- run_retry.lua: the operator's retry of an ended flow run (Prefect UI's Retry button).
-- KEYS[1] run            HASH   the run's record
-- KEYS[2] logs           STREAM its log lines (live again: no expiry)
-- KEYS[3] history        LIST   its state history
-- KEYS[4] config         HASH   the queue's settings (it must exist)
-- KEYS[5] active         ZSET   run id -> lease deadline (ms)
-- KEYS[6] ready          STREAM released runs
-- KEYS[7] scheduled      ZSET   run id -> due time (ms)
-- KEYS[8] done           ZSET   run id -> end time (ms)
-- KEYS[9] ended_index    HASH   what the purge of an ended run must remove
-- KEYS[10] waiters       ZSET   idle agent id -> registration deadline (ms)
-- KEYS[11] wake          channel wake-ups of the queue's agents
-- KEYS[12] events        channel every change of a run (watchers)
-- KEYS[13] index_prefix  slot-sharing prefix of the listing indexes (named by the state
--                        the record holds)
-- ARGV[1] run_id
-- ARGV[2] message        why, for people ("retried by an operator")
-- ARGV[3] queue_name     the queue's name (for the error)
-- Includes: basics, run_in_state, requeue
-- Reply: the run HASH as a flat array
-- Errors: RUN_NOT_FOUND <id>, BAD_TRANSITION <id> <current> SCHEDULED,
--         QUEUE_NOT_FOUND <name> (the queue was deleted: a run SCHEDULED there would wait
--         on a queue nobody lists; Broker.retry_flow_run re-creates it first)
-- A FAILED, CRASHED or CANCELLED run goes back to SCHEDULED, due now (Redis' clock),
-- its record, logs and history live again (no expiry, no purge). The run count is not
-- touched here: it counts attempts that ran, so the retried attempt adds 1 when it is
-- RUNNING (as every attempt does) and never twice.
-- No fencing token: an ended run has no owner.

local run = {id = ARGV[1], key = K_RUN, logs = K_LOGS, history = K_HISTORY}
local message, queue_name = ARGV[2], ARGV[3]
local retryable = {FAILED = true, CRASHED = true, CANCELLED = true}
local current, refused = run_in_state(run, retryable, 'SCHEDULED')
if not current then
  return refused
end
if redis.call('EXISTS', K_CONFIG) == 0 then
  return fail('QUEUE_NOT_FOUND', queue_name)
end
local now_us, now_ms = clock()
redis.call('HSET', run.key, 'due', str(now_ms))  -- the first write: refused whole under full memory
redis.call('HDEL', run.key, 'result')
requeue(run, 'Scheduled', message, now_ms, now_us, now_ms)
return redis.call('HGETALL', run.key)
