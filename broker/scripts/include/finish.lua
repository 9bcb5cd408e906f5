-- finish.lua: a run enters a terminal state.
-- Needs KEYS: scheduled, done, auto_prefix, ended_index
-- Includes: basics, release, transition, wake
--
-- K_AUTO_PREFIX .. deployment id is the set of a deployment's schedule-made runs on this
-- queue: a slot-sharing prefix, the deployment being read from the run's record.

-- Slot freed, entry trimmed, record kept for the retention time. The record expires an
-- hour after the sweep would purge it, so the purge (which also drops its idempotency
-- key) normally comes first; the expiry is only a backstop. The ended index keeps what
-- that purge must remove should the record expire first.
local function finish(run, state_type, state_name, message, now_us, now_ms, retention_ms)
  local freed = release(run)
  redis.call('ZREM', K_SCHEDULED, run.id)
  local facts = redis.call('HMGET', run.key, 'auto', 'dep', 'flow', 'name', 'ikey')
  if facts[1] then  -- no longer a future run of its schedule
    redis.call('ZREM', K_AUTO_PREFIX .. facts[2], run.id)
    redis.call('HDEL', run.key, 'auto')
  end
  set_state(run, state_type, state_name, message, now_us)
  redis.call('HSET', run.key, 'end', str(now_us))
  redis.call('HSET', K_ENDED_INDEX, run.id, cjson.encode({state_type, state_name,
             facts[2] or '', facts[3] or '', facts[4] or '', facts[5] or ''}))
  redis.call('ZADD', K_DONE, str(now_ms), run.id)
  local expiry = str(retention_ms + 3600000)
  redis.call('PEXPIRE', run.key, expiry)
  redis.call('PEXPIRE', run.logs, expiry)
  redis.call('PEXPIRE', run.history, expiry)
  if freed == 1 then
    signal_work(now_ms)
  end
end
