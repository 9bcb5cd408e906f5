#!lua
-- run_cancel.lua: the operator's cancel of a flow run (no fencing token: it is not the
-- run's owner, and this is the one state change of a claimed run it may make).
-- KEYS[1] run            HASH   the run's record
-- KEYS[2] logs           STREAM its log lines (expire with the record once it ended)
-- KEYS[3] history        LIST   its state history
-- KEYS[4] active         ZSET   run id -> lease deadline: its slot is freed
-- KEYS[5] ready          STREAM released runs (its entry is trimmed)
-- KEYS[6] scheduled      ZSET   run id -> due time (ms)
-- KEYS[7] done           ZSET   run id -> end time (ms)
-- KEYS[8] ended_index    HASH   what the purge of an ended run must remove
-- KEYS[9] waiters        ZSET   idle agent id -> registration deadline (ms)
-- KEYS[10] wake          channel wake-ups of the queue's agents ("cancel ID")
-- KEYS[11] events        channel every change of a run (watchers)
-- KEYS[12] index_prefix  slot-sharing prefix of the listing indexes (named by the state
--                        the record holds)
-- KEYS[13] auto_prefix   slot-sharing prefix of the deployments' schedule-made sets
--                        (named by the deployment the record holds)
-- ARGV[1] run_id
-- ARGV[2] message        why, for people
-- ARGV[3] retention_ms   when the sweep purges the record of a run cancelled at once
-- Includes: basics, transition, finish, wake
-- Reply: the run HASH as a flat array
-- Errors: RUN_NOT_FOUND <id>, BAD_TRANSITION <id> <current> CANCELLED
-- A run nobody has started (SCHEDULED, PENDING) is CANCELLED at once and its slot freed;
-- a RUNNING run becomes CANCELLING and its owner is told (the "cancel ID" wake-up and
-- the heartbeat reply) to stop its infrastructure and mark it CANCELLED.

local run = {id = ARGV[1], key = K_RUN, logs = K_LOGS, history = K_HISTORY}
local message, retention_ms = ARGV[2], tonumber(ARGV[3])
local current = redis.call('HGET', run.key, 'st')
if not current then
  return fail('RUN_NOT_FOUND', run.id)
end
local now_us, now_ms = clock()
if current == 'SCHEDULED' or current == 'PENDING' then
  finish(run, 'CANCELLED', 'Cancelled', message, now_us, now_ms, retention_ms)
elseif current == 'RUNNING' then
  set_state(run, 'CANCELLING', 'Cancelling', message, now_us)
  broadcast('cancel ' .. run.id)
else
  return fail('BAD_TRANSITION', run.id .. ' ' .. current .. ' CANCELLED')
end
return redis.call('HGETALL', run.key)
