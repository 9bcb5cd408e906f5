-- reclaim.lua: settle expired leases (the claim and the sweep).
-- Needs KEYS: active
-- Includes: runs, requeue, finish

-- The runs of `expired`, the ids of leases that ran out (ZRANGEBYSCORE of `active` up to
-- the lease clock, oldest first, at most a batch): a claim never started goes back to the
-- queue at its original due time; a started run that fell silent is CRASHED; a silent run
-- that was being cancelled is CANCELLED. Cost grows with the runs touched only.
local function reclaim_expired(expired, now_us, now_ms, retention_ms)
  local requeued, crashed, cancelled = {}, {}, {}
  for _, run_id in ipairs(expired) do
    local run = run_keys(run_id)
    local state = redis.call('HMGET', run.key, 'st', 'due')
    if state[1] == 'PENDING' then
      requeue(run, 'Scheduled', 'claim expired before the run started',
              tonumber(state[2]) or now_ms, now_us, now_ms)
      table.insert(requeued, run_id)
    elseif state[1] == 'RUNNING' then
      finish(run, 'CRASHED', 'Crashed',
             'no heartbeat: the run\'s infrastructure stopped reporting', now_us, now_ms,
             retention_ms)
      table.insert(crashed, run_id)
    elseif state[1] == 'CANCELLING' then
      finish(run, 'CANCELLED', 'Cancelled',
             'cancelled; its infrastructure stopped reporting', now_us, now_ms, retention_ms)
      table.insert(cancelled, run_id)
    else
      -- A stale slot with no live run behind it (record purged or already final).
      redis.call('ZREM', K_ACTIVE, run_id)
    end
  end
  return requeued, crashed, cancelled
end
