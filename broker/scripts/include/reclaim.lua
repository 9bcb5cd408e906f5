-- reclaim.lua: settle expired leases (the claim and the sweep).
-- Needs KEYS: active
-- Includes: basics, runs, requeue, finish

-- The runs of `expired`, the ids of leases that ran out (ZRANGEBYSCORE of `active` up to
-- the lease clock, oldest first, at most a batch): a claim never started goes back to the
-- queue at its original due time; a started run that fell silent is CRASHED; a silent run
-- that was being cancelled is CANCELLED. A run past its deadline (`dl`, set at RUNNING
-- from its timeout; `lease_now` is the lease clock the leases were judged by) timed out:
-- back to the queue as AwaitingRetry while its deployment's retries last (`rtr`, `rdl`,
-- set at RUNNING), else FAILED TimedOut. Its owner hears it from its next heartbeat and
-- stops the infrastructure. Cost grows with the runs touched only.
local function timed_out(run, state, now_us, now_ms, retention_ms)
  local timeout = string.format('%g s', tonumber(state[3]) / 1000)
  local attempt, retries = tonumber(state[5] or '1'), tonumber(state[6] or '0')
  if attempt <= retries then
    requeue(run, 'AwaitingRetry', 'attempt ' .. str(attempt) .. ' of ' .. str(retries + 1)
            .. ' timed out after ' .. timeout, now_ms + tonumber(state[7] or '0'),
            now_us, now_ms)
    return
  end
  finish(run, 'FAILED', 'TimedOut', 'timed out: still running ' .. timeout
         .. ' after it started (its timeout)', now_us, now_ms, retention_ms)
end

local function reclaim_expired(expired, now_us, now_ms, retention_ms, lease_now)
  local requeued, crashed, cancelled, timed = {}, {}, {}, {}
  for _, run_id in ipairs(expired) do
    local run = run_keys(run_id)
    local state = redis.call('HMGET', run.key, 'st', 'due', 'tmo', 'dl', 'count', 'rtr', 'rdl')
    if state[1] == 'RUNNING' and state[4] and tonumber(state[4]) <= lease_now then
      timed_out(run, state, now_us, now_ms, retention_ms)
      table.insert(timed, run_id)
    elseif state[1] == 'PENDING' then
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
  return requeued, crashed, cancelled, timed
end
