#!lua
-- runs_reindex.lua: index one batch of a queue's runs written before the listing indexes
-- existed (see include/indexes.lua); idempotent, resumable from a cursor.
-- KEYS[1] config         HASH   the queue's settings: `indexed` = 1 once done
-- KEYS[2] runs           ZSET   run id -> creation time (ms)
-- KEYS[3] names_index    ZSET   runs by name
-- KEYS[4] run_prefix     slot-sharing prefix of the run records (the runs are read from
--                        `runs`)
-- KEYS[5] index_prefix   slot-sharing prefix of the listing indexes (named by the state,
--                        deployment and flow a record holds)
-- ARGV[1] cursor_id     the last run id indexed by the previous call, "" to start
-- ARGV[2] cursor_ms     that run's creation time (ms), "" to start
-- ARGV[3] batch         at most this many runs per call
-- Includes: runs, indexes, history
-- Reply: {next cursor id ("" when done), next cursor ms, runs indexed}
-- Runs are taken in creation order from the `runs` ZSET. The cursor is the last run
-- done: its rank is where to go on (if it was purged meanwhile, the first run of its
-- millisecond: a few runs are indexed twice, harmlessly). When the end is reached the
-- queue's config gets `indexed` = 1, so listings stop calling this. A run that changed
-- state but has no history gets its current state as the first entry after its creation
-- (expiring with the record), but a PENDING run, whose entry the transition leaving
-- PENDING writes (include/transition.lua).

local STATES = {'SCHEDULED', 'PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLING',
                'CANCELLED', 'CRASHED'}

-- Index a run under its fixed facts (deployment, flow, name); `score` its creation ms.
local function index_facts(run_id, dep, flow, name, score)
  if dep and dep ~= '' then
    redis.call('ZADD', index_key('dep', dep), score, run_id)
  end
  if flow and flow ~= '' then
    redis.call('ZADD', index_key('flow', flow), score, run_id)
  end
  redis.call('ZADD', K_NAMES_INDEX, 0, name .. '\0' .. run_id)
end

local cursor_id, cursor_ms, batch = ARGV[1], ARGV[2], tonumber(ARGV[3])
local start = 0
if cursor_id ~= '' then
  local rank = redis.call('ZRANK', K_RUNS, cursor_id)
  if rank then
    start = rank + 1
  else
    start = redis.call('ZCOUNT', K_RUNS, '-inf', '(' .. cursor_ms)
  end
end
local rows = redis.call('ZRANGE', K_RUNS, start, start + batch - 1, 'WITHSCORES')
local last_id, last_ms = '', ''
for i = 1, #rows, 2 do
  local run_id, score = rows[i], rows[i + 1]
  local run = run_keys(run_id)
  local facts = redis.call('HMGET', run.key, 'st', 'sn', 'dep', 'flow', 'name', 'smsg', 'sts',
                           'created')
  if facts[1] then
    redis.call('ZADD', index_key('state', facts[1]), score, run_id)  -- refusable first write
    for _, state in ipairs(STATES) do
      if state ~= facts[1] then
        redis.call('ZREM', index_key('state', state), run_id)
      end
    end
    if facts[2] and facts[2] ~= default_name(facts[1]) then
      redis.call('ZADD', index_key('sname', facts[2]), score, run_id)
    end
    index_facts(run_id, facts[3], facts[4], facts[5] or '', score)
    if facts[7] ~= facts[8] and facts[1] ~= 'PENDING'
        and redis.call('EXISTS', run.history) == 0 then
      record_history(run.history, history_entry(facts[1], facts[2] or default_name(facts[1]),
                                                facts[6], facts[7] or '0'))
      local ttl = redis.call('PTTL', run.key)
      if ttl > 0 then
        redis.call('PEXPIRE', run.history, ttl)
      end
    end
  end
  last_id, last_ms = run_id, score
end
if #rows < batch * 2 then
  if redis.call('EXISTS', K_CONFIG) == 1 then
    redis.call('HSET', K_CONFIG, 'indexed', '1')
  end
  return {'', '', #rows / 2}
end
return {last_id, last_ms, #rows / 2}
