-- requeue.lua: a run back to SCHEDULED.
-- Needs KEYS: scheduled, done, ended_index
-- Includes: basics, release, transition, wake, fair_line

-- Due at due_ms: the claim is void and the run waits for a new one. A run that had ended
-- (a retry of FAILED or CRASHED) is live again: no expiry, no purge. Returns 1 when the
-- run held a slot.
local function requeue(run, state_name, message, due_ms, now_us, now_ms)
  local freed = release(run)
  set_state(run, 'SCHEDULED', state_name, message, now_us)
  redis.call('HDEL', run.key, 'agent', 'token', 'claimed', 'hb', 'infra', 'end')
  redis.call('ZREM', K_DONE, run.id)
  redis.call('HDEL', K_ENDED_INDEX, run.id)
  redis.call('PERSIST', run.key)
  redis.call('PERSIST', run.logs)
  redis.call('PERSIST', run.history)
  redis.call('HSET', run.key, 'due', str(due_ms))
  redis.call('ZADD', K_SCHEDULED, str(due_ms), run.id)
  fair_add(run.id, str(due_ms), redis.call('HGET', run.key, 'tags'))
  wake_one(now_ms)  -- a run is scheduled now: signal_work's check would pass
  return freed
end
