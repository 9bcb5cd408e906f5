#!lua
-- run_park.lua: a claimed run that must wait for a named concurrency limit gives back
-- its queue slot and waits outside the queue's due runs, SCHEDULED with the state name
-- AwaitingConcurrencySlot, until the limit sends it back (run_unpark.lua).
-- KEYS[1] run            HASH   the run's record
-- KEYS[2] logs           STREAM its log lines
-- KEYS[3] history        LIST   its state history
-- KEYS[4] active         ZSET   run id -> lease deadline: its slot is freed
-- KEYS[5] ready          STREAM released runs (its entry is trimmed)
-- KEYS[6] scheduled      ZSET   run id -> due time (ms): a freed slot wakes an agent
--                        if runs are due
-- KEYS[7] waiters        ZSET   idle agent id -> registration deadline (ms)
-- KEYS[8] wake           channel wake-ups of the queue's agents
-- KEYS[9] events         channel every change of a run (watchers)
-- KEYS[10] index_prefix  slot-sharing prefix of the listing indexes
-- ARGV[1] run_id
-- ARGV[2] token          the fencing token of the agent's claim
-- ARGV[3] message        why it waits (names the limit), for people
-- ARGV[4] limit          the limit it waits for: its name, a newline, the tag's value
--                        ("" for a plain limit); kept as `lw` until it is claimed again
-- Includes: basics, owns, release, transition, wake
-- Reply: 1 parked; 0 the claim is no longer the caller's (nothing written)
-- The run is in no due set and holds no lease here: waiting costs the queue nothing,
-- and its other runs are delivered as if it were not there. Its place is kept in the
-- limit's line (limit_acquire.lua put it there before this call).

local run = {id = ARGV[1], key = K_RUN, logs = K_LOGS, history = K_HISTORY}
local current = redis.call('HMGET', run.key, 'st', 'token')
if current[1] ~= 'PENDING' or not owns(current[2], ARGV[2]) then
  return 0
end
local now_us, now_ms = clock()
local freed = release(run)
set_state(run, 'SCHEDULED', 'AwaitingConcurrencySlot', ARGV[3], now_us)
redis.call('HDEL', run.key, 'agent', 'token', 'claimed', 'hb', 'infra')
redis.call('HSET', run.key, 'lw', ARGV[4])
if freed == 1 then
  signal_work(now_ms)
end
return 1
