-- purge.lua: remove a run with everything that names it (a purge or a delete).
-- Needs KEYS: scheduled, runs, done, idempotency, auto_prefix, names_index, ended_index
-- Includes: indexes
--
-- K_AUTO_PREFIX .. deployment id: a deployment's schedule-made runs on this queue, a
-- slot-sharing prefix (the deployment is read from the record).

-- Every index entry, the record, its logs and history. A record that expired before its
-- purge left its facts in the ended index (indexes.lua).
local function purge_run(run)
  local run_id = run.id
  local facts = redis.call('HMGET', run.key, 'st', 'sn', 'dep', 'flow', 'name', 'ikey', 'auto')
  if not facts[1] then
    local ended = redis.call('HGET', K_ENDED_INDEX, run_id)
    if ended then
      local f = cjson.decode(ended)
      local function field(i)
        if f[i] == nil or f[i] == '' or f[i] == cjson.null then
          return nil
        end
        return f[i]
      end
      facts = {field(1), field(2), field(3), field(4), field(5), field(6), nil}
    end
  end
  redis.call('HDEL', K_ENDED_INDEX, run_id)
  if facts[1] then
    redis.call('ZREM', index_key('state', facts[1]), run_id)
    if facts[2] and facts[2] ~= default_name(facts[1]) then
      redis.call('ZREM', index_key('sname', facts[2]), run_id)
    end
  end
  if facts[3] then
    redis.call('ZREM', index_key('dep', facts[3]), run_id)
    if facts[7] then
      redis.call('ZREM', K_AUTO_PREFIX .. facts[3], run_id)
    end
  end
  if facts[4] then
    redis.call('ZREM', index_key('flow', facts[4]), run_id)
  end
  if facts[5] then
    redis.call('ZREM', K_NAMES_INDEX, facts[5] .. '\0' .. run_id)
  end
  if facts[6] and redis.call('HGET', K_IDEMPOTENCY, facts[6]) == run_id then
    redis.call('HDEL', K_IDEMPOTENCY, facts[6])
  end
  redis.call('DEL', run.key, run.logs, run.history)
  redis.call('ZREM', K_SCHEDULED, run_id)
  redis.call('ZREM', K_RUNS, run_id)
  redis.call('ZREM', K_DONE, run_id)
end
