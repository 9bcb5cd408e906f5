#!lua flags=allow-oom
-- sweep.lua: settle expired leases and purge old terminal runs of one queue.
-- KEYS[1] config         HASH   the queue's lease clock
-- KEYS[2] active         ZSET   run id -> lease deadline (ms, lease clock)
-- KEYS[3] ready          STREAM released runs; group "agents", one consumer per agent
-- KEYS[4] scheduled      ZSET   run id -> due time (ms)
-- KEYS[5] runs           ZSET   run id -> creation time (ms)
-- KEYS[6] done           ZSET   run id -> end time (ms): what is purged, oldest first
-- KEYS[7] idempotency    HASH   idempotency key -> run id
-- KEYS[8] agents         ZSET   agent id -> last poll (ms)
-- KEYS[9] waiters        ZSET   idle agent id -> registration deadline (ms)
-- KEYS[10] names_index   ZSET   runs by name
-- KEYS[11] ended_index   HASH   what the purge of an ended run must remove
-- KEYS[12] wake          channel wake-ups of the queue's agents
-- KEYS[13] events        channel every change of a run (watchers)
-- KEYS[14] run_prefix    slot-sharing prefix of the run records (the runs are read from
--                        the leases and `done`)
-- KEYS[15] index_prefix  slot-sharing prefix of the listing indexes (named by the state,
--                        deployment and flow a record holds)
-- KEYS[16] auto_prefix   slot-sharing prefix of the deployments' schedule-made sets
--                        (named by the deployment a record holds)
-- ARGV[1] batch          at most this many leases settled and records purged per call
-- ARGV[2] retention_ms   terminal runs older than this are deleted
-- ARGV[3] agent_ttl_ms   agents silent for longer are dropped from the queue's list
-- ARGV[4] lease_ms       the lease agents grant (a longer pause is a Redis stall)
-- Includes: basics, runs, lease_clock, reclaim, purge, event
-- Reply: {{requeued ids}, {crashed ids}, {cancelled ids}, {purged ids}, {timed out ids}}
-- Runs never started go back to the queue; started runs whose heartbeats stopped become
-- CRASHED; their slots are freed. Cost grows with the runs touched, not the queue.
-- Runs under full memory: purging old runs is how memory comes back, and the leases it
-- judges are renewed under full memory too (heartbeat.lua). Its first write is the lease
-- clock's removal of the tick (lease_clock.lua).

-- A deleted queue keeps its history (Keys.retired_queues) with no config, leases or
-- agents: its old runs are still purged here, and nothing else is written for it.
local batch, retention_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local now_us, now_ms = clock()
local lease_now = lease_clock(now_ms, tonumber(ARGV[4]), true)
local expired = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', str(lease_now), 'LIMIT', 0, batch)
local requeued, crashed, cancelled, timed_out = reclaim_expired(expired, now_us, now_ms,
                                                                retention_ms, lease_now)

local purged = redis.call('ZRANGEBYSCORE', K_DONE, '-inf', str(now_ms - retention_ms),
                          'LIMIT', 0, batch)
for _, run_id in ipairs(purged) do
  purge_run(run_keys(run_id))  -- record, logs, history, index entries
  event('deleted ' .. run_id)
end

-- Forget agents that stopped polling; their stream consumers go once nothing is pending.
local silent_before = str(now_ms - tonumber(ARGV[3]))
if #redis.call('ZRANGEBYSCORE', K_AGENTS, '-inf', silent_before, 'LIMIT', 0, 1) > 0 then
  redis.call('ZREMRANGEBYSCORE', K_AGENTS, '-inf', silent_before)
  for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', K_READY, GROUP)) do
    local name, pending = consumer[2], consumer[4]
    if pending == 0 and not redis.call('ZSCORE', K_AGENTS, name) then
      redis.call('XGROUP', 'DELCONSUMER', K_READY, GROUP, name)
    end
  end
end
return {requeued, crashed, cancelled, purged, timed_out}
