-- run_create.lua: create flow runs on one queue (creating the queue if needed).
-- KEYS: the queue keys listed in _common.lua
-- ARGV[1] queue_id     uuid used if the queue must be created
-- ARGV[2] records      "1": reply with each run's record; "0": ids only (bulk enqueue)
-- ARGV[3..] 9 fields per run:
--   id, name, deployment id, flow name, parameters JSON, tags JSON, idempotency key,
--   due (absolute ms, or "" for now + delay), delay (ms)
-- Reply: {queue created (0|1), id, created (0|1), [record], id, created, [record], ...}
-- A run whose idempotency key is already known is not created: the reply names the run
-- that holds the key, so retries and racing creators all get the same run.

-- Append a field to an HSET argument list unless it is empty (absent fields cost nothing).
local function optional(fields, name, value)
  if value ~= '' and value ~= '[]' then
    table.insert(fields, name)
    table.insert(fields, value)
  end
end

local queue_id, with_records = ARGV[1], ARGV[2] == '1'
local now_us, now_ms = clock()
local reply = {ensure_queue(queue_id, '', '', now_us)}
local added = 0
for i = 3, #ARGV, 9 do
  local run_id, key = ARGV[i], ARGV[i + 6]
  local existing = false
  if key ~= '' then
    existing = redis.call('HGET', K_IDEM, key)
    if existing and redis.call('EXISTS', K_RUN .. existing) == 0 then
      existing = false
    end
  end
  if existing then
    run_id = existing
    table.insert(reply, run_id)
    table.insert(reply, 0)
  else
    local due = ARGV[i + 7]
    if due == '' then
      due = now_ms + tonumber(ARGV[i + 8])
    else
      due = tonumber(due)
    end
    local fields = {'id', run_id, 'name', ARGV[i + 1], 'st', 'SCHEDULED', 'sn', 'Scheduled',
                    'sts', str(now_us), 'created', str(now_us), 'due', str(due), 'count', '0',
                    'params', ARGV[i + 4]}
    optional(fields, 'dep', ARGV[i + 2])
    optional(fields, 'flow', ARGV[i + 3])
    optional(fields, 'tags', ARGV[i + 5])
    optional(fields, 'ikey', key)
    redis.call('HSET', K_RUN .. run_id, unpack(fields))
    redis.call('ZADD', K_SCHEDULED, str(due), run_id)
    redis.call('ZADD', K_RUNS, str(now_ms), run_id)
    if key ~= '' then
      redis.call('HSET', K_IDEM, key, run_id)
    end
    added = added + 1
    table.insert(reply, run_id)
    table.insert(reply, 1)
  end
  if with_records then
    table.insert(reply, redis.call('HGETALL', K_RUN .. run_id))
  end
end
if added > 0 then
  publish('wake')
end
return reply
