#!lua flags=no-writes
-- preview.lua: the SCHEDULED runs of a queue due within a horizon, as agents see them.
-- KEYS[1] scheduled     ZSET   run id -> due time (ms)
-- KEYS[2] ready         STREAM released runs; group "agents"
-- KEYS[3] run_prefix    slot-sharing prefix of the run records (the runs are read from
--                       the schedule and the stream)
-- ARGV[1] horizon_ms   runs due up to now + horizon
-- ARGV[2] limit        at most this many runs
-- Includes: basics, runs
-- Reply: {now_ms, record, record, ...}, records unordered (the caller sorts by due time)
-- Reads both places a waiting run can be: the schedule and the stream entries released
-- to agents but not yet delivered.

local _, now_ms = clock()
local limit = tonumber(ARGV[2])
local reply = {now_ms}

local last_delivered = nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', K_READY)) do
  local info = {}
  for i = 1, #group, 2 do
    info[group[i]] = group[i + 1]
  end
  if info['name'] == GROUP then
    last_delivered = info['last-delivered-id']
  end
end
if last_delivered then
  for _, entry in ipairs(redis.call('XRANGE', K_READY, '(' .. last_delivered, '+',
                                    'COUNT', limit)) do
    local run = run_keys(entry[2][2])
    if redis.call('HGET', run.key, 'st') == 'SCHEDULED' then
      table.insert(reply, redis.call('HGETALL', run.key))
    end
  end
end
for _, run_id in ipairs(redis.call('ZRANGEBYSCORE', K_SCHEDULED, '-inf',
                                   str(now_ms + tonumber(ARGV[1])), 'LIMIT', 0, limit)) do
  table.insert(reply, redis.call('HGETALL', run_keys(run_id).key))
end
return reply
