-- claim.lua: hand an agent up to N runs of one queue, within the queue's limit.
-- KEYS: the queue keys listed in _common.lua
-- ARGV[1] agent_id       the stream consumer (one per agent process)
-- ARGV[2] max_runs       how many runs the agent can take now
-- ARGV[3] prefetch_ms    runs due within this window are handed out early
-- ARGV[4] lease_ms       a claim not renewed by a heartbeat within this time expires
-- ARGV[5] reclaim_batch  at most this many expired leases are settled first
-- ARGV[6] retention_ms   how long terminal run records are kept
-- Reply: {status, record, record, ...}; status "ok" | "paused" | "full"; each record is
--        the run HASH as a flat array, including its fencing token ("token")
-- Errors: QUEUE_NOT_FOUND <name>
-- The pause flag, the limit check and the SCHEDULED -> PENDING compare-and-set happen in
-- this one script, so no interleaving of agents can exceed the limit or claim a run twice.
-- Cost grows with the runs returned and reclaimed, never with the queue's length.

local agent, asked = ARGV[1], tonumber(ARGV[2])
local prefetch_ms, lease_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local reclaim_batch, retention_ms = tonumber(ARGV[5]), tonumber(ARGV[6])

local config = redis.call('HMGET', K_CONFIG, 'is_paused', 'concurrency_limit')
if not config[1] then
  return fail('QUEUE_NOT_FOUND', queue_name())
end
local now_us, now_ms = clock()
redis.call('HSET', K_CONFIG, 'last_polled', str(now_us))
redis.call('ZADD', K_AGENTS, str(now_ms), agent)
if config[1] == '1' then
  return {'paused'}
end

reclaim_expired(now_us, now_ms, reclaim_batch, retention_ms)

local wanted = asked
if config[2] then
  wanted = math.min(wanted, tonumber(config[2]) - redis.call('ZCARD', K_ACTIVE))
end
if wanted <= 0 then
  return {'full'}
end

local function read_entries(count)
  local reply = redis.call('XREADGROUP', 'GROUP', GROUP, agent, 'COUNT', count,
                           'STREAMS', K_READY, '>')
  if not reply then
    return {}
  end
  return reply[1][2]
end

-- Move the earliest due runs (due <= now + prefetch) from the schedule into the stream.
local function release_due(count)
  local due = redis.call('ZRANGEBYSCORE', K_SCHEDULED, '-inf', str(now_ms + prefetch_ms),
                         'LIMIT', 0, count)
  for _, run_id in ipairs(due) do
    redis.call('ZREM', K_SCHEDULED, run_id)
    redis.call('XADD', K_READY, '*', 'run', run_id)
  end
  return #due
end

local claimed = {'ok'}
local lease_until = str(now_ms + lease_ms)
-- Bounded retries: an entry whose run was cancelled after its release is dropped, and
-- the loop reads again to fill the agent's request.
for _ = 1, 4 do
  local want = wanted - (#claimed - 1)
  if want <= 0 then
    break
  end
  local entries = read_entries(want)
  if #entries < want and release_due(want - #entries) > 0 then
    for _, entry in ipairs(read_entries(want - #entries)) do
      table.insert(entries, entry)
    end
  end
  if #entries == 0 then
    break
  end
  for _, entry in ipairs(entries) do
    local entry_id, run_id = entry[1], entry[2][2]
    local run_key = K_RUN .. run_id
    if redis.call('HGET', run_key, 'st') == 'SCHEDULED' then
      local token = redis.call('HINCRBY', K_CONFIG, 'generation', 1)
      redis.call('HSET', run_key, 'st', 'PENDING', 'sn', 'Pending', 'sts', str(now_us),
                 'agent', agent, 'token', tostring(token), 'claimed', str(now_us),
                 'hb', str(now_us), 'entry', entry_id)
      redis.call('HDEL', run_key, 'smsg')
      redis.call('ZADD', K_ACTIVE, lease_until, run_id)
      table.insert(claimed, redis.call('HGETALL', run_key))
    else
      redis.call('XACK', K_READY, GROUP, entry_id)
      redis.call('XDEL', K_READY, entry_id)
    end
  end
end
return claimed
