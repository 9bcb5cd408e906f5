#!lua flags=allow-oom
-- sweep.lua: settle expired leases and purge old terminal runs of one queue.
-- KEYS: the queue keys listed in _common.lua
-- ARGV[1] batch          at most this many leases settled and records purged per call
-- ARGV[2] retention_ms   terminal runs older than this are deleted
-- ARGV[3] agent_ttl_ms   agents silent for longer are dropped from the queue's list
-- ARGV[4] lease_ms       the lease agents grant (a longer pause is a Redis stall)
-- Reply: {{requeued ids}, {crashed ids}, {cancelled ids}, {purged ids}}
-- Runs never started go back to the queue; started runs whose heartbeats stopped become
-- CRASHED; their slots are freed. Cost grows with the runs touched, not the queue.
-- Runs under full memory: purging old runs is how memory comes back, and the leases it
-- judges are renewed under full memory too (heartbeat.lua).

-- A deleted queue keeps its history (Keys.retired_queues) with no config, leases or
-- agents: its old runs are still purged here, and nothing else is written for it.
local batch, retention_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local now_us, now_ms = clock()
local lease_now = lease_clock(now_ms, tonumber(ARGV[4]), true)
local requeued, crashed, cancelled = reclaim_expired(now_us, now_ms, lease_now, batch,
                                                     retention_ms)

local purged = redis.call('ZRANGEBYSCORE', K_DONE, '-inf', str(now_ms - retention_ms),
                          'LIMIT', 0, batch)
for _, run_id in ipairs(purged) do
  purge_run(run_id, K_RUN .. run_id)  -- record, logs, history, index entries
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
return {requeued, crashed, cancelled, purged}
