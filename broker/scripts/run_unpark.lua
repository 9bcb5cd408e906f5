#!lua
-- run_unpark.lua: a run waiting for a named concurrency limit goes back among its
-- queue's due runs, at its own due time (it keeps its place in the queue's order).
-- KEYS[1] run            HASH   the run's record
-- KEYS[2] scheduled      ZSET   run id -> due time (ms)
-- KEYS[3] waiters        ZSET   idle agent id -> registration deadline (ms)
-- KEYS[4] wake           channel wake-ups of the queue's agents
-- KEYS[5] events         channel every change of a run (watchers)
-- KEYS[6] config         HASH   the queue's settings (fair sharing: its line by tag value)
-- KEYS[7] index_prefix   slot-sharing prefix of the queue's indexes (the fair lines)
-- ARGV[1] run_id
-- Includes: basics, event, wake, fair_line
-- Reply: 1 sent back (or due already); 2 not waiting here yet (claimed and about to be
--        parked, or to take its slot): it keeps its place in the limit's line; 0 the
--        run is gone or ended or running: the caller drops it from the limit's line
-- Its state name stays AwaitingConcurrencySlot until an agent claims it (claim.lua).

local state = redis.call('HMGET', K_RUN, 'st', 'sn', 'due', 'tags')
if state[1] == 'PENDING' or (state[1] == 'SCHEDULED' and state[2] ~= 'AwaitingConcurrencySlot') then
  return 2
end
if state[1] ~= 'SCHEDULED' then
  return 0
end
if redis.call('ZSCORE', K_SCHEDULED, ARGV[1]) then
  return 1
end
local _, now_ms = clock()
redis.call('ZADD', K_SCHEDULED, state[3] or str(now_ms), ARGV[1])
fair_add(ARGV[1], state[3] or str(now_ms), state[4])
wake_one(now_ms)
event('run ' .. ARGV[1] .. ' SCHEDULED')
return 1
