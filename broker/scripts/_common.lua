-- _common.lua: the prelude prepended to every work-queue script when it is loaded.
--
-- Every queue script receives the same KEYS, all under the queue's hash tag {q:NAME}:
--   KEYS[1] config      HASH   the queue's settings and counters
--   KEYS[2] scheduled   ZSET   run id -> due time (ms)
--   KEYS[3] ready       STREAM due runs; group "agents"; consumer = agent id
--   KEYS[4] active      ZSET   run id -> lease deadline (ms, lease clock); its size is the slot count
--   KEYS[5] runs        ZSET   run id -> creation time (ms)
--   KEYS[6] done        ZSET   run id -> end time (ms); terminal runs awaiting purge
--   KEYS[7] idempotency HASH   idempotency key -> run id
--   KEYS[8] agents      ZSET   agent id -> last poll (ms)
--   KEYS[9] run prefix         run record = prefix .. run id (a HASH in the same slot);
--                              its log lines = prefix .. run id .. ':logs' (a capped STREAM)
--   KEYS[10] wake        channel "wake" on new work or a freed slot, "cancel ID", "deleted"
--   KEYS[11] auto prefix        a deployment's schedule-made runs here = prefix .. deployment
--                              id (a ZSET in the same slot)
--   KEYS[12] index prefix      listing indexes = prefix .. kind .. ':' .. value (ZSETs)
--   KEYS[13] events      channel every change of a run or of the queue (for watchers)
--   KEYS[14] waiters     ZSET   idle agent id -> since (ms): whom a wake-up goes to
-- Every name comes from broker/keys.py: a script never derives a key by cutting another.
-- Scripts that need the queue's own name (to store it or to name it in an error) take it
-- as an ARGV.
--
-- Full memory (maxmemory, noeviction): a script either runs whole or is refused before its
-- first write. On Redis 7 each script's first line declares it (`#!lua` is refused up
-- front when memory is full; `flags=allow-oom` runs anyway; `flags=no-writes` only reads).
-- Redis 6.2 has no such line (the loader strips it) and refuses a script at its first
-- write that may grow memory, letting every later write through: so each script's first
-- write is that refusable one, except in the scripts that must run under full memory
-- (heartbeat, sweep), whose first write is a removal (see lease_clock).
--
-- Numbers handed to redis.call are formatted with str(): Lua would otherwise print
-- large numbers as 1.7e+15 and lose digits. Errors are returned (never raised) as
-- "RUNQ <CODE> <detail>", which broker/errors.py maps to exceptions; every check
-- happens before the first write, because a script's writes are never rolled back.

redis.replicate_commands()

local K_CONFIG, K_SCHEDULED, K_READY, K_ACTIVE = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_RUNS, K_DONE, K_IDEM, K_AGENTS, K_RUN = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local K_WAKE, K_AUTO = KEYS[10], KEYS[11]
local K_INDEX, K_EVENTS, K_WAITERS = KEYS[12], KEYS[13], KEYS[14]
local GROUP = 'agents'

local function str(n)
  return string.format('%.0f', n)
end

-- Redis' own clock, as (microseconds, milliseconds): the only clock runq trusts.
local function clock()
  local t = redis.call('TIME')
  local s, u = tonumber(t[1]), tonumber(t[2])
  return s * 1000000 + u, s * 1000 + math.floor(u / 1000)
end

-- A claim's fencing token is never stored: the record holds its SHA-1 (the claim id),
-- so reading a record does not reveal the token that writes to it need.
local function owns(stored, token)
  return token ~= '' and stored ~= nil and stored == redis.sha1hex(token)
end

-- The lease clock (ms): Redis' clock minus every gap in which this queue's scripts saw
-- Redis process nothing (a SIGSTOP, a fork, a slow disk, a failover, a restart). Lease
-- deadlines in `active` are on this clock, so time in which no owner could have renewed
-- its lease does not count against it. A gap is a pause of more than half a lease since
-- the last script on this queue (live owners renew, and live agents sweep, more often
-- than that). Under full memory a script that must still run (may_grow = false) first
-- removes the tick, a write Redis 6.2 lets through, which lets the rest through too.
local function lease_clock(now_ms, lease_ms, must_run)
  if redis.call('EXISTS', K_CONFIG) == 0 then
    return now_ms  -- a deleted queue: never write a config back
  end
  local seen = redis.call('HMGET', K_CONFIG, 'tick', 'stalled')
  local tick, stalled = tonumber(seen[1]), tonumber(seen[2]) or 0
  local changed = false
  if tick and now_ms - tick > lease_ms / 2 then
    stalled = stalled + (now_ms - tick)
    changed = true
  end
  if must_run then
    redis.call('HDEL', K_CONFIG, 'tick')
  end
  if changed then
    redis.call('HSET', K_CONFIG, 'tick', str(now_ms), 'stalled', str(stalled))
  else
    redis.call('HSET', K_CONFIG, 'tick', str(now_ms))
  end
  return now_ms - stalled
end

local function fail(code, detail)
  return redis.error_reply('RUNQ ' .. code .. ' ' .. (detail or ''))
end

-- The index of a deployment's schedule-made runs on this queue (same slot).
local function auto_key(deployment_id)
  return K_AUTO .. deployment_id
end

local function publish(message)
  redis.call('PUBLISH', K_WAKE, message)
end

-- Create the queue `name` if it does not exist yet; returns 1 when it was created.
local function ensure_queue(name, id, description, limit, now_us)
  if redis.call('EXISTS', K_CONFIG) == 1 then
    return 0
  end
  local fields = {'id', id, 'name', name, 'description', description,
                  'is_paused', '0', 'created', str(now_us), 'updated', str(now_us),
                  'generation', '0'}
  if limit ~= '' then
    table.insert(fields, 'concurrency_limit')
    table.insert(fields, limit)
  end
  redis.call('HSET', K_CONFIG, unpack(fields))
  if redis.call('EXISTS', K_READY) == 0 then
    redis.call('XGROUP', 'CREATE', K_READY, GROUP, '0', 'MKSTREAM')
  end
  return 1
end

local function set_state(run_key, state_type, state_name, message, now_us)
  redis.call('HSET', run_key, 'st', state_type, 'sn', state_name, 'sts', str(now_us))
  if message ~= nil and message ~= '' then
    redis.call('HSET', run_key, 'smsg', message)
  else
    redis.call('HDEL', run_key, 'smsg')
  end
end

-- Give up the run's slot and its stream entry (acknowledged, then deleted: "trimmed").
local function release(run_id, run_key)
  local freed = redis.call('ZREM', K_ACTIVE, run_id)
  local entry = redis.call('HGET', run_key, 'entry')
  if entry then
    redis.call('XACK', K_READY, GROUP, entry)
    redis.call('XDEL', K_READY, entry)
    redis.call('HDEL', run_key, 'entry')
  end
  return freed
end

-- Enter a terminal state: slot freed, entry trimmed, record kept for the retention time.
-- The record expires an hour after the sweep would purge it, so the purge (which also
-- drops its idempotency key) normally comes first; the expiry is only a backstop.
local function finish(run_id, run_key, state_type, state_name, message, now_us, now_ms,
                      retention_ms)
  local freed = release(run_id, run_key)
  redis.call('ZREM', K_SCHEDULED, run_id)
  local auto = redis.call('HMGET', run_key, 'auto', 'dep')
  if auto[1] then  -- no longer a future run of its schedule
    redis.call('ZREM', auto_key(auto[2]), run_id)
    redis.call('HDEL', run_key, 'auto')
  end
  set_state(run_key, state_type, state_name, message, now_us)
  redis.call('HSET', run_key, 'end', str(now_us))
  redis.call('ZADD', K_DONE, str(now_ms), run_id)
  redis.call('PEXPIRE', run_key, str(retention_ms + 3600000))
  redis.call('PEXPIRE', run_key .. ':logs', str(retention_ms + 3600000))
  if freed == 1 then
    publish('wake')
  end
end

-- Back to SCHEDULED, due at due_ms: the claim is void and the run waits for a new one.
-- A run that had ended (a retry of FAILED or CRASHED) is live again: no expiry, no purge.
local function requeue(run_id, run_key, state_name, message, due_ms, now_us)
  local freed = release(run_id, run_key)
  set_state(run_key, 'SCHEDULED', state_name, message, now_us)
  redis.call('HDEL', run_key, 'agent', 'token', 'claimed', 'hb', 'infra', 'end')
  redis.call('ZREM', K_DONE, run_id)
  redis.call('PERSIST', run_key)
  redis.call('PERSIST', run_key .. ':logs')
  redis.call('HSET', run_key, 'due', str(due_ms))
  redis.call('ZADD', K_SCHEDULED, str(due_ms), run_id)
  publish('wake')
  return freed
end

-- Expired leases, oldest first, at most `batch`: a claim never started goes back to the
-- queue at its original due time; a started run that fell silent is CRASHED; a silent run
-- that was being cancelled is CANCELLED. Cost grows with the runs touched only.
-- `lease_now` is the lease clock (see lease_clock).
local function reclaim_expired(now_us, now_ms, lease_now, batch, retention_ms)
  local requeued, crashed, cancelled = {}, {}, {}
  local expired = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', str(lease_now), 'LIMIT', 0, batch)
  for _, run_id in ipairs(expired) do
    local run_key = K_RUN .. run_id
    local st = redis.call('HGET', run_key, 'st')
    if st == 'PENDING' then
      local due = redis.call('HGET', run_key, 'due') or str(now_ms)
      requeue(run_id, run_key, 'Scheduled', 'claim expired before the run started',
              tonumber(due), now_us)
      table.insert(requeued, run_id)
    elseif st == 'RUNNING' then
      finish(run_id, run_key, 'CRASHED', 'Crashed',
             'no heartbeat: the run\'s infrastructure stopped reporting', now_us, now_ms,
             retention_ms)
      table.insert(crashed, run_id)
    elseif st == 'CANCELLING' then
      finish(run_id, run_key, 'CANCELLED', 'Cancelled',
             'cancelled; its infrastructure stopped reporting', now_us, now_ms, retention_ms)
      table.insert(cancelled, run_id)
    else
      -- A stale slot with no live run behind it (record purged or already final).
      redis.call('ZREM', K_ACTIVE, run_id)
    end
  end
  return requeued, crashed, cancelled
end

-- ---- end of prelude; the script's own body follows ----
