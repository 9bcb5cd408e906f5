#!lua
-- run_create.lua: create flow runs on one queue (creating the queue if needed).
-- KEYS[1] config         HASH   the queue's settings (created if missing)
-- KEYS[2] ready          STREAM released runs (created with its group with the queue)
-- KEYS[3] scheduled      ZSET   run id -> due time (ms)
-- KEYS[4] runs           ZSET   run id -> creation time (ms)
-- KEYS[5] idempotency    HASH   idempotency key -> run id
-- KEYS[6] names_index    ZSET   runs by name
-- KEYS[7] waiters        ZSET   idle agent id -> registration deadline (ms)
-- KEYS[8] wake           channel "wake" to the queue's agents
-- KEYS[9] events         channel "run ID SCHEDULED" per run (watchers)
-- KEYS[10] run_prefix    slot-sharing prefix of the run records: a batch holds up to 1000
--                        runs, and an idempotency key names a run read here
-- KEYS[11] index_prefix  slot-sharing prefix of the listing indexes (named by each run's
--                        deployment and flow)
-- KEYS[12] auto_prefix   slot-sharing prefix of the deployments' schedule-made sets
--                        (named by each run's deployment)
-- ARGV[1] queue_id     uuid used if the queue must be created
-- ARGV[2] with_records "1": reply with each run's record; "0": only the ids (bulk enqueue)
-- ARGV[3] name         the queue's name (stored if the queue must be created)
-- ARGV[4..] run_id, run_name, deployment_id, flow_name, parameters, tags,
--           idempotency_key, due_ms, delay_ms, auto, timeout_ms
--                      11 fields per run: parameters and tags JSON ("" for no tags);
--                      due_ms absolute, or "" for now + delay_ms; auto "1": made by a
--                      schedule, indexed per deployment so a schedule change can remove
--                      the future runs it made; timeout_ms "" for none
-- Includes: basics, ensure_queue, indexes, event, wake, fair_line
-- Reply: {queue created (0|1), {position, existing id, ...}, {record, record, ...}}
--   positions (1-based) name the runs not created because their idempotency key was
--   known, with the id of the run that holds the key; records only when ARGV[2] is "1"
-- So retries and racing creators all get the same run for the same key.
-- Each new run is indexed (state, deployment, flow, name: see include/indexes.lua) and
-- announced ("run ID SCHEDULED" on the events channel). Its history LIST starts with its
-- first transition: the creation entry is the record's own `created`
-- (broker/records.py), so a run that never leaves SCHEDULED (a schedule's future runs)
-- costs no extra key.
-- Keys per run are built here rather than passed: all carry the queue's hash tag (one
-- slot), and a batch of 1000 runs would otherwise pass thousands of KEYS for the client
-- to hash and the server to check against the ACL.

-- Append a field to an HSET argument list unless it is empty (absent fields cost nothing).
local function optional(fields, name, value)
  if value ~= '' then
    table.insert(fields, name)
    table.insert(fields, value)
  end
end

local queue_id, with_records, queue_name = ARGV[1], ARGV[2] == '1', ARGV[3]
local now_us, now_ms = clock()
local created_queue = ensure_queue(queue_name, queue_id, '', '', now_us)
local now_us_text, now_ms_text = str(now_us), str(now_ms)
local hits, records, schedule, index = {}, {}, {}, {}
local fair_by = redis.call('HGET', K_CONFIG, 'fair_by')  -- fair sharing: lines per value
-- The batch's entries of the deployment and flow indexes (one ZADD per key) and of the
-- name index (one ZADD): runs of one batch mostly share a deployment and a flow.
local facts, names = {}, {}
local function add_fact(key, value, run_id)
  if value ~= '' then
    facts[key] = facts[key] or {}
    table.insert(facts[key], now_ms_text)
    table.insert(facts[key], run_id)
  end
end
local position = 0
for i = 4, #ARGV, 11 do
  position = position + 1
  local run_id, key = ARGV[i], ARGV[i + 6]
  local existing = false
  if key ~= '' then
    existing = redis.call('HGET', K_IDEMPOTENCY, key)
    if existing and redis.call('EXISTS', K_RUN_PREFIX .. existing) == 0 then
      existing = false
    end
  end
  if existing then
    run_id = existing
    table.insert(hits, position)
    table.insert(hits, existing)
  else
    local due = ARGV[i + 7]
    if due == '' then
      due = ARGV[i + 8] == '0' and now_ms_text or str(now_ms + tonumber(ARGV[i + 8]))
    end
    local fields = {'id', run_id, 'name', ARGV[i + 1], 'st', 'SCHEDULED', 'sn', 'Scheduled',
                    'sts', now_us_text, 'created', now_us_text, 'due', due,
                    'params', ARGV[i + 4]}
    optional(fields, 'dep', ARGV[i + 2])
    optional(fields, 'flow', ARGV[i + 3])
    optional(fields, 'tags', ARGV[i + 5])
    optional(fields, 'ikey', key)
    optional(fields, 'tmo', ARGV[i + 10])
    if ARGV[i + 9] == '1' then
      table.insert(fields, 'auto')
      table.insert(fields, '1')
      redis.call('ZADD', K_AUTO_PREFIX .. ARGV[i + 2], due, run_id)
    end
    redis.call('HSET', K_RUN_PREFIX .. run_id, unpack(fields))
    add_fact(index_key('dep', ARGV[i + 2]), ARGV[i + 2], run_id)
    add_fact(index_key('flow', ARGV[i + 3]), ARGV[i + 3], run_id)
    table.insert(names, '0')
    table.insert(names, ARGV[i + 1] .. '\0' .. run_id)
    event('run ' .. run_id .. ' SCHEDULED')
    table.insert(schedule, due)
    table.insert(schedule, run_id)
    if fair_by then
      fair_add(run_id, due, ARGV[i + 5], fair_by)
    end
    table.insert(index, now_ms_text)
    table.insert(index, run_id)
    if key ~= '' then
      redis.call('HSET', K_IDEMPOTENCY, key, run_id)
    end
  end
  if with_records then
    table.insert(records, redis.call('HGETALL', K_RUN_PREFIX .. run_id))
  end
end
if #schedule > 0 then
  redis.call('ZADD', K_SCHEDULED, unpack(schedule))
  redis.call('ZADD', K_RUNS, unpack(index))
  redis.call('ZADD', index_key('state', 'SCHEDULED'), unpack(index))
  redis.call('ZADD', K_NAMES_INDEX, unpack(names))
  for key, entries in pairs(facts) do
    redis.call('ZADD', key, unpack(entries))
  end
  wake_one(now_ms)  -- runs are scheduled now
end
return {created_queue, hits, records}
