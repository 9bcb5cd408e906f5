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

-- Wake-ups (agent/wakeup.py). "cancel ID", "deleted" and the like go to every agent on
-- the queue's channel K_WAKE. "wake" (new work, a freed slot) goes to one idle agent: a
-- waiter in K_WAITERS (registered by claim.lua when a claim got less than it asked, until
-- its score, a deadline in ms), freshest first, on its own channel K_WAKE .. ':' .. agent
-- id. A waiter nobody hears on that channel (a dead agent) is dropped and the next one
-- tried; with none heard, "wake" goes to every agent (the old broadcast); with no run
-- scheduled (a freed slot nobody waits for) it goes to nobody. A woken agent
-- that takes all it asked for while more is due wakes the next one (claim.lua), so one
-- wake-up per change suffices however many runs it made claimable. The loader makes
-- WAKE_PUBLISH 'SPUBLISH' on a Redis 7 cluster: sharded, it stays on the queue's node.
-- WAKE_COUNTED says whether the reply of WAKE_PUBLISH counts every subscriber: true on
-- one server and with SPUBLISH; the loader makes it false on a cluster without sharded
-- pub/sub (Redis 6.2), where PUBLISH counts only the subscribers of the node the script
-- runs on while the message still reaches the others over the cluster bus. There a
-- count of 0 proves nothing, so no waiter is judged dead (none is dropped) and "wake"
-- is broadcast on K_WAKE: every agent of the queue hears it (each claims; those that
-- get nothing register again), the behaviour before waiters existed.
local WAKE_PUBLISH = 'PUBLISH'
local WAKE_COUNTED = true
local WAKE_TRIES = 8  -- dead waiters dropped per wake-up at most (the rest expire)

local function wake_waiter()
  if not WAKE_COUNTED then
    return false  -- no liveness to judge by: the caller broadcasts
  end
  local _, now_ms = clock()
  redis.call('ZREMRANGEBYSCORE', K_WAITERS, '-inf', str(now_ms))
  for _ = 1, WAKE_TRIES do
    local popped = redis.call('ZPOPMAX', K_WAITERS)
    if #popped == 0 then
      return false
    end
    if redis.call(WAKE_PUBLISH, K_WAKE .. ':' .. popped[1], 'wake') > 0 then
      return true
    end
  end
  return false
end

-- "wake" to one idle agent, or to every agent when no waiter hears it.
local function wake_one()
  if not wake_waiter() then
    redis.call(WAKE_PUBLISH, K_WAKE, 'wake')
  end
end

local function publish(message)
  if message == 'wake' then
    if redis.call('ZCARD', K_SCHEDULED) == 0 then
      return  -- a freed slot with nothing waiting for it: no agent has anything to claim
    end
    wake_one()
    return
  end
  redis.call(WAKE_PUBLISH, K_WAKE, message)
end

-- Tell watchers (the UI, `--watch`) something changed: "run ID TYPE", "deleted ID",
-- "queue". A plain PUBLISH: nobody listening costs nothing.
local function event(message)
  redis.call('PUBLISH', K_EVENTS, message)
end

-- ---- state history and listing indexes (all in this queue's slot) -------------------
-- Each run keeps its last HISTORY_MAX transitions in a capped LIST beside its record
-- (run key .. ':history'), each entry JSON [type, name, timestamp us, message], the
-- message cut to MESSAGE_MAX bytes; creation is not stored there (the reader adds it from
-- the record's `created` while the list is not full). The listing indexes are ZSETs of run ids scored by
-- creation time (ms), named K_INDEX .. kind .. ':' .. value:
--   state:TYPE  every run in that state type
--   sname:NAME  runs whose state name is not its type's default ("AwaitingRetry")
--   dep:ID      a deployment's runs;  flow:NAME  a flow's runs
-- and K_INDEX .. 'names', score 0, members NAME .. "\0" .. ID: runs by name (ZRANGEBYLEX).
-- State names are cut to NAME_MAX bytes (broker/claims.py refuses names over 64
-- characters first, which take at most 256 bytes).
-- K_INDEX .. 'ended' is a HASH run id -> JSON [type, name, dep, flow, run name, ikey] of
-- every ended run awaiting purge (written by finish, removed by purge_run and requeue):
-- what purge_run must remove when the record itself expired first (its backstop expiry),
-- so no index entry outlives its run. It never expires; each value is a few hundred
-- bytes at most and lives as long as the run's entry in K_DONE.
local HISTORY_MAX, MESSAGE_MAX, NAME_MAX = 50, 1000, 256

local function history_key(run_key)
  return run_key .. ':history'
end

local function index_key(kind, value)
  return K_INDEX .. kind .. ':' .. value
end

-- The default display name of a state type ("CANCELLING" -> "Cancelling").
local function default_name(state_type)
  return string.sub(state_type, 1, 1) .. string.lower(string.sub(state_type, 2))
end

-- At most `limit` bytes (MESSAGE_MAX by default), cut on a UTF-8 character boundary.
local function capped(message, limit)
  limit = limit or MESSAGE_MAX
  if message == nil or #message <= limit then
    return message
  end
  local cut = limit
  while cut > 0 do
    local byte = string.byte(message, cut + 1)
    if byte < 128 or byte >= 192 then
      break
    end
    cut = cut - 1
  end
  return string.sub(message, 1, cut)
end

local function record_history(run_key, state_type, state_name, message, now_us)
  local entry = cjson.encode({state_type, state_name, str(now_us), capped(message or '')})
  if redis.call('RPUSH', history_key(run_key), entry) > HISTORY_MAX then
    redis.call('LTRIM', history_key(run_key), -HISTORY_MAX, -1)
  end
end

-- Move a run between the state indexes (old type/name nil for a new run).
local function index_state(run_id, old_type, old_name, new_type, new_name, score)
  if old_type ~= new_type then
    if old_type then
      redis.call('ZREM', index_key('state', old_type), run_id)
    end
    redis.call('ZADD', index_key('state', new_type), score, run_id)
  end
  -- sname membership depends on the (type, name) pair: (RUNNING, 'Scheduled') is
  -- indexed, (SCHEDULED, 'Scheduled') is not, though the name is the same.
  local old_sname, new_sname = nil, nil
  if old_name and old_type and old_name ~= default_name(old_type) then
    old_sname = old_name
  end
  if new_name ~= default_name(new_type) then
    new_sname = new_name
  end
  if old_sname ~= new_sname then
    if old_sname then
      redis.call('ZREM', index_key('sname', old_sname), run_id)
    end
    if new_sname then
      redis.call('ZADD', index_key('sname', new_sname), score, run_id)
    end
  end
end

-- Index a run under its fixed facts (deployment, flow, name); `score` its creation ms.
local function index_facts(run_id, dep, flow, name, score)
  if dep and dep ~= '' then
    redis.call('ZADD', index_key('dep', dep), score, run_id)
  end
  if flow and flow ~= '' then
    redis.call('ZADD', index_key('flow', flow), score, run_id)
  end
  redis.call('ZADD', K_INDEX .. 'names', 0, name .. '\0' .. run_id)
end

-- Creation time (ms) of a record's 'created' field (us): the score of its index entries.
local function created_ms(created_us)
  return str(math.floor(tonumber(created_us or '0') / 1000))
end

-- A state change already written to the record: indexes, history, watchers.
local function transitioned(run_id, run_key, old_type, old_name, created_us, new_type,
                            new_name, message, now_us)
  index_state(run_id, old_type, old_name, new_type, new_name, created_ms(created_us))
  record_history(run_key, new_type, new_name, message, now_us)
  event('run ' .. run_id .. ' ' .. new_type)
end

local function ended_key()
  return K_INDEX .. 'ended'
end

-- Remove a run from every index, its record, logs and history (a purge or a delete).
-- A record that expired before its purge leaves its facts in ended_key() (see above).
local function purge_run(run_id, run_key)
  local run = redis.call('HMGET', run_key, 'st', 'sn', 'dep', 'flow', 'name', 'ikey', 'auto')
  if not run[1] then
    local facts = redis.call('HGET', ended_key(), run_id)
    if facts then
      local f = cjson.decode(facts)
      local function field(i)
        if f[i] == nil or f[i] == '' or f[i] == cjson.null then
          return nil
        end
        return f[i]
      end
      run = {field(1), field(2), field(3), field(4), field(5), field(6), nil}
    end
  end
  redis.call('HDEL', ended_key(), run_id)
  if run[1] then
    redis.call('ZREM', index_key('state', run[1]), run_id)
    if run[2] and run[2] ~= default_name(run[1]) then
      redis.call('ZREM', index_key('sname', run[2]), run_id)
    end
  end
  if run[3] then
    redis.call('ZREM', index_key('dep', run[3]), run_id)
    if run[7] then
      redis.call('ZREM', K_AUTO .. run[3], run_id)
    end
  end
  if run[4] then
    redis.call('ZREM', index_key('flow', run[4]), run_id)
  end
  if run[5] then
    redis.call('ZREM', K_INDEX .. 'names', run[5] .. '\0' .. run_id)
  end
  if run[6] and redis.call('HGET', K_IDEM, run[6]) == run_id then
    redis.call('HDEL', K_IDEM, run[6])
  end
  redis.call('DEL', run_key, run_key .. ':logs', history_key(run_key))
  redis.call('ZREM', K_SCHEDULED, run_id)
  redis.call('ZREM', K_RUNS, run_id)
  redis.call('ZREM', K_DONE, run_id)
end

-- The opening lookup of a script on one run (run_delete, run_retry): the run's key and
-- state type, or nil and the error reply (RUN_NOT_FOUND, or BAD_TRANSITION to `target`
-- when its state is not in `allowed`, a set of state types).
local function run_in_state(run_id, allowed, target)
  local run_key = K_RUN .. run_id
  local current = redis.call('HGET', run_key, 'st')
  if not current then
    return nil, fail('RUN_NOT_FOUND', run_id)
  end
  if not allowed[current] then
    return nil, fail('BAD_TRANSITION', run_id .. ' ' .. current .. ' ' .. target)
  end
  return run_key, current
end

-- Create the queue `name` if it does not exist yet; returns 1 when it was created.
local function ensure_queue(name, id, description, limit, now_us)
  if redis.call('EXISTS', K_CONFIG) == 1 then
    return 0
  end
  local fields = {'id', id, 'name', name, 'description', description,
                  'is_paused', '0', 'created', str(now_us), 'updated', str(now_us),
                  'generation', '0', 'indexed', '1'}
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

-- The one place a run's state is written (the claim writes PENDING itself and then
-- calls transitioned): the record, the state indexes, the history, the event.
local function set_state(run_id, run_key, state_type, state_name, message, now_us)
  local old = redis.call('HMGET', run_key, 'st', 'sn', 'created')
  redis.call('HSET', run_key, 'st', state_type, 'sn', state_name, 'sts', str(now_us))
  if message ~= nil and message ~= '' then
    redis.call('HSET', run_key, 'smsg', capped(message))
  else
    redis.call('HDEL', run_key, 'smsg')
  end
  transitioned(run_id, run_key, old[1], old[2], old[3], state_type, state_name, message,
               now_us)
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
  set_state(run_id, run_key, state_type, state_name, message, now_us)
  redis.call('HSET', run_key, 'end', str(now_us))
  local facts = redis.call('HMGET', run_key, 'dep', 'flow', 'name', 'ikey')
  redis.call('HSET', ended_key(), run_id, cjson.encode({state_type, state_name,
             facts[1] or '', facts[2] or '', facts[3] or '', facts[4] or ''}))
  redis.call('ZADD', K_DONE, str(now_ms), run_id)
  redis.call('PEXPIRE', run_key, str(retention_ms + 3600000))
  redis.call('PEXPIRE', run_key .. ':logs', str(retention_ms + 3600000))
  redis.call('PEXPIRE', history_key(run_key), str(retention_ms + 3600000))
  if freed == 1 then
    publish('wake')
  end
end

-- Back to SCHEDULED, due at due_ms: the claim is void and the run waits for a new one.
-- A run that had ended (a retry of FAILED or CRASHED) is live again: no expiry, no purge.
local function requeue(run_id, run_key, state_name, message, due_ms, now_us)
  local freed = release(run_id, run_key)
  set_state(run_id, run_key, 'SCHEDULED', state_name, message, now_us)
  redis.call('HDEL', run_key, 'agent', 'token', 'claimed', 'hb', 'infra', 'end')
  redis.call('ZREM', K_DONE, run_id)
  redis.call('HDEL', ended_key(), run_id)
  redis.call('PERSIST', run_key)
  redis.call('PERSIST', run_key .. ':logs')
  redis.call('PERSIST', history_key(run_key))
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
