-- run_in_state.lua: the opening lookup of a script on one run (run_delete, run_retry).
-- Needs KEYS: none
-- Includes: basics

-- The run's state type, or nil and the error reply: RUN_NOT_FOUND, or BAD_TRANSITION to
-- `target` when its state is not in `allowed` (a set of state types).
local function run_in_state(run, allowed, target)
  local current = redis.call('HGET', run.key, 'st')
  if not current then
    return nil, fail('RUN_NOT_FOUND', run.id)
  end
  if not allowed[current] then
    return nil, fail('BAD_TRANSITION', run.id .. ' ' .. current .. ' ' .. target)
  end
  return current
end
