-- runs.lua: the keys of a run the script learns of from data it reads.
-- Needs KEYS: run_prefix
-- Includes: none
--
-- Helpers take a run as a table {id, key, logs, history}: its record HASH, its log
-- STREAM and its history LIST. A script told of one run by its caller receives those
-- keys in KEYS (run, logs, history); a run named by data read inside the script (a
-- stream entry, a lease, an index, an idempotency key) has its keys built here from
-- K_RUN_PREFIX, a slot-sharing prefix: every key built from it carries the queue's hash
-- tag, so it lives in the same cluster slot as the script's declared keys.
local function run_keys(run_id)
  local key = K_RUN_PREFIX .. run_id
  return {id = run_id, key = key, logs = key .. ':logs', history = key .. ':history'}
end
