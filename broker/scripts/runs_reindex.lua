#!lua
-- runs_reindex.lua: index one batch of a queue's runs written before the listing indexes
-- existed (see _common.lua for the indexes); idempotent, resumable from a cursor.
-- KEYS: the queue keys listed in _common.lua
-- ARGV[1] cursor_id     the last run id indexed by the previous call, "" to start
-- ARGV[2] cursor_ms     that run's creation time (ms), "" to start
-- ARGV[3] batch         at most this many runs per call
-- Reply: {next cursor id ("" when done), next cursor ms, runs indexed}
-- Runs are taken in creation order from the `runs` ZSET. The cursor is the last run
-- done: its rank is where to go on (if it was purged meanwhile, the first run of its
-- millisecond: a few runs are indexed twice, harmlessly). When the end is reached the
-- queue's config gets `indexed` = 1, so listings stop calling this. A run that changed
-- state but has no history gets its current state as the first entry after its creation
-- (expiring with the record).

local STATES = {'SCHEDULED', 'PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLING',
                'CANCELLED', 'CRASHED'}
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
  local run_key = K_RUN .. run_id
  local run = redis.call('HMGET', run_key, 'st', 'sn', 'dep', 'flow', 'name', 'smsg', 'sts',
                         'created')
  if run[1] then
    redis.call('ZADD', index_key('state', run[1]), score, run_id)  -- refusable first write
    for _, state in ipairs(STATES) do
      if state ~= run[1] then
        redis.call('ZREM', index_key('state', state), run_id)
      end
    end
    if run[2] and run[2] ~= default_name(run[1]) then
      redis.call('ZADD', index_key('sname', run[2]), score, run_id)
    end
    index_facts(run_id, run[3], run[4], run[5] or '', score)
    if run[7] ~= run[8] and redis.call('EXISTS', history_key(run_key)) == 0 then
      record_history(run_key, run[1], run[2] or default_name(run[1]), run[6] or '',
                     tonumber(run[7] or '0'))
      local ttl = redis.call('PTTL', run_key)
      if ttl > 0 then
        redis.call('PEXPIRE', history_key(run_key), ttl)
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
