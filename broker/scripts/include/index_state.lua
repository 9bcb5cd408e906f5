-- index_state.lua: move a run between the state indexes (indexes.lua) on a transition.
-- Needs KEYS: none
-- Includes: indexes

-- Move a run between the state indexes (old type/name nil for a new run).
local function index_state(run_id, old_type, old_name, new_type, new_name, score)
  if old_type ~= new_type then
    if old_type then
      redis.call('ZREM', index_key('state', old_type), run_id)
    end
    redis.call('ZADD', index_key('state', new_type), score, run_id)
  end
  -- sname membership depends on the (type, name) pair: (RUNNING, 'Scheduled') is
  -- indexed, (SCHEDULED, 'Scheduled') is not, though the name is the same.
  local old_sname, new_sname = nil, nil
  if old_name and old_type and old_name ~= default_name(old_type) then
    old_sname = old_name
  end
  if new_name ~= default_name(new_type) then
    new_sname = new_name
  end
  if old_sname ~= new_sname then
    if old_sname then
      redis.call('ZREM', index_key('sname', old_sname), run_id)
    end
    if new_sname then
      redis.call('ZADD', index_key('sname', new_sname), score, run_id)
    end
  end
end
