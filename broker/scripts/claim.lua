#!lua
-- claim.lua: hand an agent up to N runs of one queue, within the queue's limit.
-- KEYS: the queue keys listed in _common.lua
-- ARGV[1] agent_id       the stream consumer (one per agent process)
-- ARGV[2] max_runs       how many runs the agent can take now (at most 1000 per call)
-- ARGV[3] prefetch_ms    runs due within this window are handed out early
-- ARGV[4] lease_ms       a claim not renewed by a heartbeat within this time expires
-- ARGV[5] reclaim_batch  at most this many expired leases are settled first
-- ARGV[6] retention_ms   how long terminal run records are kept
-- ARGV[7] nonce          fresh randomness from the caller (32 hex digits): each run's
--                        fencing token is SHA-1(nonce, run id, generation); the record
--                        keeps only the token's own SHA-1, so it cannot be read back
-- ARGV[8] queue_name     the queue's name (for the error)
-- Reply: {status, record, record, ...}; status "ok" | "paused" | "full"; each record is
--        the run HASH as a flat array followed by "claim_token", the fencing token
--        (only this reply carries it)
-- Errors: QUEUE_NOT_FOUND <name>
-- Waiters: an agent that got less than it asked is registered in KEYS[14] (woken first on
--          new work), one that got all of it is removed and, if more is due, wakes another.
-- The pause flag, the limit check and the SCHEDULED -> PENDING compare-and-set happen in
-- this one script, so no interleaving of agents can exceed the limit or claim a run twice.
-- Cost grows with the runs returned and reclaimed, never with the queue's length.

local agent, asked = ARGV[1], math.min(tonumber(ARGV[2]), 1000)
local prefetch_ms, lease_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local reclaim_batch, retention_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local nonce, queue_name = ARGV[7], ARGV[8]

local config = redis.call('HMGET', K_CONFIG, 'is_paused', 'concurrency_limit')
if not config[1] then
  return fail('QUEUE_NOT_FOUND', queue_name)
end
local now_us, now_ms = clock()
redis.call('ZADD', K_AGENTS, str(now_ms), agent)  -- also the queue's last_polled
if config[1] == '1' then
  return {'paused'}
end

local lease_now = lease_clock(now_ms, lease_ms, false)
reclaim_expired(now_us, now_ms, lease_now, reclaim_batch, retention_ms)

local wanted = asked
if config[2] then
  wanted = math.min(wanted, tonumber(config[2]) - redis.call('ZCARD', K_ACTIVE))
end
-- Whom the next "wake" goes to (see wake_waiter in _common.lua): an agent that got less
-- than it asked for waits for more, until a lease from now unless it claims again; one
-- that got all it asked for is busy. The set expires with its last waiter's claim. An
-- idle agent's registration is renewed only once half of it is gone (fewer AOF writes).
local function waiting(got)
  if got < asked then
    local registered = tonumber(redis.call('ZSCORE', K_WAITERS, agent) or '0')
    if registered < now_ms + lease_ms / 2 then
      redis.call('ZADD', K_WAITERS, str(now_ms + lease_ms), agent)
      if redis.call('PTTL', K_WAITERS) < lease_ms then
        redis.call('PEXPIRE', K_WAITERS, str(3 * lease_ms))
      end
    end
  else
    redis.call('ZREM', K_WAITERS, agent)
  end
end

if wanted <= 0 then
  waiting(0)
  return {'full'}
end

-- Move the earliest due runs (due <= now + prefetch) from the schedule into the stream.
local function release_due(count)
  local due = redis.call('ZRANGEBYSCORE', K_SCHEDULED, '-inf', str(now_ms + prefetch_ms),
                         'LIMIT', 0, count)
  if #due > 0 then
    redis.call('ZREM', K_SCHEDULED, unpack(due))
    for _, run_id in ipairs(due) do
      redis.call('XADD', K_READY, '*', 'run', run_id)
    end
  end
end

-- Deliver up to `count` stream entries to this agent (its consumer's pending list).
local function read_entries(count)
  local reply = redis.call('XREADGROUP', 'GROUP', GROUP, agent, 'COUNT', count,
                           'STREAMS', K_READY, '>')
  if not reply then
    return {}
  end
  return reply[1][2]
end

-- SCHEDULED -> PENDING for every delivered run still waiting; drop the entries of runs
-- cancelled since their release. Returns how many entries were dropped.
local function take(entries, claimed)
  local runs, stale = {}, {}
  for _, entry in ipairs(entries) do
    local run_key = K_RUN .. entry[2][2]
    local state = redis.call('HMGET', run_key, 'st', 'smsg', 'auto', 'dep', 'sn', 'created')
    if state[1] == 'SCHEDULED' then
      table.insert(runs, {entry[1], entry[2][2], run_key, state[2], state[5], state[6]})
      if state[3] then  -- no longer a future run of its schedule
        redis.call('ZREM', auto_key(state[4]), entry[2][2])
        redis.call('HDEL', run_key, 'auto')
      end
    else
      table.insert(stale, entry[1])
    end
  end
  if #stale > 0 then
    redis.call('XACK', K_READY, GROUP, unpack(stale))
    redis.call('XDEL', K_READY, unpack(stale))
  end
  if #runs == 0 then
    return #stale
  end
  local generation = redis.call('HINCRBY', K_CONFIG, 'generation', #runs) - #runs
  local leases, lease_until = {}, str(lease_now + lease_ms)
  for _, run in ipairs(runs) do
    local entry_id, run_id, run_key, message = run[1], run[2], run[3], run[4]
    generation = generation + 1
    local token = redis.sha1hex(nonce .. ':' .. run_id .. ':' .. str(generation))
    redis.call('HSET', run_key, 'st', 'PENDING', 'sn', 'Pending', 'sts', str(now_us),
               'agent', agent, 'token', redis.sha1hex(token), 'claimed', str(now_us),
               'hb', str(now_us), 'entry', entry_id)
    if message then
      redis.call('HDEL', run_key, 'smsg')
    end
    transitioned(run_id, run_key, 'SCHEDULED', run[5], run[6], 'PENDING', 'Pending', '', now_us)
    table.insert(leases, lease_until)
    table.insert(leases, run_id)
    local record = redis.call('HGETALL', run_key)
    table.insert(record, 'claim_token')
    table.insert(record, token)
    table.insert(claimed, record)
  end
  redis.call('ZADD', K_ACTIVE, unpack(leases))
  return #stale
end

-- Entries already waiting in the stream are older than the ones released now, so they
-- are delivered first. A dropped entry leaves room: read again, a bounded number of times.
local claimed = {'ok'}
local rounds_left = true  -- false when every round's read was cut short by stale entries
for round = 1, 4 do
  local want = wanted - (#claimed - 1)
  if want <= 0 then
    break
  end
  release_due(want)
  local entries = read_entries(want)
  local stale = take(entries, claimed)
  if stale == 0 or #entries < want then
    break
  end
  rounds_left = round < 4
end
waiting(#claimed - 1)
-- Short of what it could take because the rounds ran out on stale entries, while runs
-- are still claimable (due in the schedule, or entries the last full read may have left
-- in the stream): wake an idle agent (this one, just registered as a waiter, if it is the
-- freshest), so the rest is not left to the fallback poll.
local function claimable_left()
  if #redis.call('ZRANGEBYSCORE', K_SCHEDULED, '-inf', str(now_ms + prefetch_ms), 'LIMIT', 0, 1) > 0 then
    return true
  end
  local function fields(flat)
    local t = {}
    for i = 1, #flat, 2 do
      t[flat[i]] = flat[i + 1]
    end
    return t
  end
  local last = fields(redis.call('XINFO', 'STREAM', K_READY))['last-generated-id']
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', K_READY)) do
    local g = fields(group)
    if g['name'] == GROUP then
      return g['last-delivered-id'] ~= last  -- entries never delivered remain
    end
  end
  return false
end
if not rounds_left and #claimed - 1 < wanted and claimable_left() then
  wake_one()
end
-- Busy now, with more due and room left: pass the wake-up on to the next idle agent.
if #claimed - 1 == asked and (not config[2] or tonumber(config[2]) > redis.call('ZCARD', K_ACTIVE))
    and #redis.call('ZRANGEBYSCORE', K_SCHEDULED, '-inf', str(now_ms + prefetch_ms), 'LIMIT', 0, 1) > 0 then
  publish('wake')
end
return claimed
