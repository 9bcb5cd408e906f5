-- transition.lua: the one place a run's state is written (but a claim's PENDING).
-- Needs KEYS: none
-- Includes: basics, indexes, index_state, history, event

-- Write a run's new state (the claim writes PENDING itself): the record, the state
-- indexes, the history, the event. Leaving PENDING, the history gets the claim's own
-- entry first (a claim stores none), unless it already ends with it (a claim made by an
-- earlier runq, which stored it).
local function set_state(run, state_type, state_name, message, now_us)
  local old = redis.call('HMGET', run.key, 'st', 'sn', 'created', 'sts', 'smsg')
  if message ~= nil and message ~= '' then
    redis.call('HSET', run.key, 'st', state_type, 'sn', state_name, 'sts', str(now_us),
               'smsg', capped(message))
  else
    redis.call('HSET', run.key, 'st', state_type, 'sn', state_name, 'sts', str(now_us))
    redis.call('HDEL', run.key, 'smsg')
  end
  index_state(run.id, old[1], old[2], state_type, state_name, created_ms(old[3]))
  local entry = history_entry(state_type, state_name, message, now_us)
  if old[1] == 'PENDING' then
    local claim = history_entry('PENDING', old[2] or 'Pending', old[5], old[4] or now_us)
    if redis.call('LRANGE', run.history, -1, -1)[1] ~= claim then
      record_history(run.history, claim, entry)
    else
      record_history(run.history, entry)
    end
  else
    record_history(run.history, entry)
  end
  event('run ' .. run.id .. ' ' .. state_type)
end
