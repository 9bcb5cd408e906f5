#!lua
-- claim.lua: hand an agent up to N runs of one queue, within the queue's limit.
-- KEYS[1] config         HASH   the queue's settings, claim counter and lease clock
-- KEYS[2] agents         ZSET   agent id -> last poll (ms)
-- KEYS[3] active         ZSET   run id -> lease deadline (ms, lease clock)
-- KEYS[4] scheduled      ZSET   run id -> due time (ms)
-- KEYS[5] ready          STREAM released runs; group "agents", consumer = agent id
-- KEYS[6] done           ZSET   run id -> end time (ms): runs that ended
-- KEYS[7] waiters        ZSET   idle agent id -> registration deadline (ms)
-- KEYS[8] wake           channel wake-ups of the queue's agents
-- KEYS[9] events         channel every change of a run (watchers)
-- KEYS[10] ended_index   HASH   what the purge of an ended run must remove
-- KEYS[11] run_prefix    slot-sharing prefix of the run records: the runs are read from
--                        the stream and the leases, so their keys are named here
-- KEYS[12] index_prefix  slot-sharing prefix of the listing indexes (named by states)
-- KEYS[13] auto_prefix   slot-sharing prefix of the deployments' schedule-made sets
--                        (named by the deployment a record holds)
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
-- Includes: basics, lease_time, indexes, event, wake
-- Includes on demand: reclaim, fair_pick
--                     (only a claim that finds expired leases defines the helpers that
--                     settle them, where it settles them; only a claim on a queue with
--                     fair sharing those that pick its due runs round-robin by tag value)
-- Reply: {status, record, record, ...}; status "ok" | "paused" | "full"; each record is
--        the run HASH as a flat array followed by "claim_token", the fencing token
--        (only this reply carries it)
-- Errors: QUEUE_NOT_FOUND <name>
-- Waiters: an agent that got less than it asked is registered in `waiters` (woken first
--          on new work), one that got all of it is removed and, if more is due, wakes
--          another.
-- The pause flag, the limit check and the SCHEDULED -> PENDING compare-and-set happen in
-- this one script, so no interleaving of agents can exceed the limit or claim a run twice.
-- Cost grows with the runs returned and reclaimed, never with the queue's length. One
-- read of the config serves the pause flag, the limit, the lease clock and the claim
-- counter, one write at the end keeps the lease clock's tick and the counter, and each
-- run is read once (its reply is that record with the claim's changes). The run's history
-- gets its PENDING entry from the transition that leaves PENDING (include/transition.lua:
-- the same RPUSH as that transition's own entry); readers add it meanwhile from the
-- record (broker/records.py).
-- Full memory: the first write is the ZADD of the poll, refused (whole script unwritten)
-- when memory is full.

local agent, asked = ARGV[1], math.min(tonumber(ARGV[2]), 1000)
local prefetch_ms, lease_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local reclaim_batch, retention_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local nonce, queue_name = ARGV[7], ARGV[8]

local config = redis.call('HMGET', K_CONFIG, 'is_paused', 'concurrency_limit', 'tick',
                          'stalled', 'generation', 'fair_by')
if not config[1] then
  return fail('QUEUE_NOT_FOUND', queue_name)
end
local now_us, now_ms = clock()
local now_us_text = str(now_us)
redis.call('ZADD', K_AGENTS, now_ms, agent)  -- also the queue's last_polled
if config[1] == '1' then
  return {'paused'}
end

local lease_now, stalled, stall_seen = lease_time(now_ms, lease_ms, config[3], config[4])
local expired = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', lease_now, 'LIMIT', 0,
                           reclaim_batch)
if #expired > 0 then
  --#include reclaim
  reclaim_expired(expired, now_us, now_ms, retention_ms, lease_now)
end

local fair_due = nil  -- on a queue with fair sharing: its choice of due runs
if config[6] then
  --#include fair_pick
  fair_due = fair_pick
end

local limit, active = tonumber(config[2]), 0
local wanted = asked
if limit then
  active = redis.call('ZCARD', K_ACTIVE)
  wanted = math.min(wanted, limit - active)
end

-- The fields the claim writes on a run, in the order of `values` below (for the reply).
local CLAIMED = {'st', 'sn', 'sts', 'agent', 'token', 'claimed', 'hb', 'entry'}
local claimed = {wanted > 0 and 'ok' or 'full'}
local generation = tonumber(config[5] or '0')
local first_generation = generation
local due_by, lease_until = now_ms + prefetch_ms, lease_now + lease_ms
local more_due = false  -- runs stay due after the last round's
local rounds_left = true  -- false when every round's read was cut short by stale entries
-- Entries already waiting in the stream are older than the ones released now, so they
-- are delivered first. A dropped entry (its run cancelled since its release) leaves room:
-- read again, a bounded number of times.
for round = 1, 4 do
  local want = wanted - (#claimed - 1)
  if want <= 0 then
    break
  end
  -- Move the earliest due runs (due <= now + prefetch) from the schedule into the
  -- stream, looking at one more to know whether runs stay due after these; then deliver
  -- up to `want` entries to this agent (its consumer's pending list).
  local due
  if fair_due then
    due, more_due = fair_due(due_by, want)
  else
    due = redis.call('ZRANGEBYSCORE', K_SCHEDULED, '-inf', due_by, 'LIMIT', 0, want + 1)
    more_due = #due > want
    if more_due then
      due[#due] = nil
    end
    if #due > 0 then
      redis.call('ZREM', K_SCHEDULED, unpack(due))
    end
  end
  for _, run_id in ipairs(due) do
    redis.call('XADD', K_READY, '*', 'run', run_id)
  end
  local reply = redis.call('XREADGROUP', 'GROUP', GROUP, agent, 'COUNT', want,
                           'STREAMS', K_READY, '>')
  local entries = reply and reply[1][2] or {}
  -- SCHEDULED -> PENDING for every delivered run still waiting; the reply carries its
  -- record as read, with the claim's changes.
  local stale, unscheduled, pending, leases = {}, {}, {}, {}
  for _, entry in ipairs(entries) do
    local run_id = entry[2][2]
    local run_key = K_RUN_PREFIX .. run_id
    local record = redis.call('HGETALL', run_key)
    local at = {}  -- field name -> position of its value in `record`
    for i = 1, #record, 2 do
      at[record[i]] = i + 1
    end
    if record[at.st] == 'SCHEDULED' then
      local sname, created, dep = record[at.sn], record[at.created], record[at.dep]
      generation = generation + 1
      local token = redis.sha1hex(nonce .. ':' .. run_id .. ':' .. str(generation))
      local claim_id = redis.sha1hex(token)
      redis.call('HSET', run_key, 'st', 'PENDING', 'sn', 'Pending', 'sts', now_us_text,
                 'agent', agent, 'token', claim_id, 'claimed', now_us_text,
                 'hb', now_us_text, 'entry', entry[1])
      local values = {'PENDING', 'Pending', now_us_text, agent, claim_id, now_us_text,
                      now_us_text, entry[1]}
      for j, name in ipairs(CLAIMED) do  -- the reply's record, as HGETALL would now read it
        if at[name] then
          record[at[name]] = values[j]
        else
          record[#record + 1], record[#record + 2] = name, values[j]
        end
      end
      if at.smsg or at.auto or at.lw then  -- its last message; its schedule's mark; the
        redis.call('HDEL', run_key, 'smsg', 'auto', 'lw')  -- limit it waited for
        if at.auto then  -- no longer a future run of its schedule
          redis.call('ZREM', K_AUTO_PREFIX .. dep, run_id)
        end
        local kept = {}
        for j = 1, #record, 2 do
          if record[j] ~= 'smsg' and record[j] ~= 'auto' and record[j] ~= 'lw' then
            kept[#kept + 1], kept[#kept + 2] = record[j], record[j + 1]
          end
        end
        record = kept
      end
      if sname and sname ~= 'Scheduled' then  -- it leaves sname:NAME (see index_state.lua)
        redis.call('ZREM', index_key('sname', sname), run_id)
      end
      unscheduled[#unscheduled + 1] = run_id
      pending[#pending + 1], pending[#pending + 2] = created_ms(created), run_id
      event('run ' .. run_id .. ' PENDING')
      leases[#leases + 1], leases[#leases + 2] = lease_until, run_id
      record[#record + 1], record[#record + 2] = 'claim_token', token
      claimed[#claimed + 1] = record
    else
      stale[#stale + 1] = entry[1]
    end
  end
  if #stale > 0 then
    redis.call('XACK', K_READY, GROUP, unpack(stale))
    redis.call('XDEL', K_READY, unpack(stale))
  end
  if #leases > 0 then
    redis.call('ZREM', index_key('state', 'SCHEDULED'), unpack(unscheduled))
    redis.call('ZADD', index_key('state', 'PENDING'), unpack(pending))
    active = active + redis.call('ZADD', K_ACTIVE, unpack(leases))  -- slots taken now
  end
  if #stale == 0 or #entries < want then
    break
  end
  rounds_left = round < 4
end

-- Whom the next "wake" goes to (see wake.lua). An agent that got less than it asked for
-- waits for more, until a lease from now unless it claims again (its registration is
-- renewed only once half of it is gone: fewer AOF writes); the set expires with its last
-- waiter's claim. One that got all it asked for is busy: it leaves the waiters.
local got = #claimed - 1
if got < asked then
  local registered = tonumber(redis.call('ZSCORE', K_WAITERS, agent) or '0')
  if registered < now_ms + lease_ms / 2 then
    redis.call('ZADD', K_WAITERS, now_ms + lease_ms, agent)
    if redis.call('PTTL', K_WAITERS) < lease_ms then
      redis.call('PEXPIRE', K_WAITERS, 3 * lease_ms)
    end
  end
  -- Short of what it could take because the rounds ran out on stale entries, while runs
  -- are still claimable (due in the schedule, or entries the last full read may have
  -- left in the stream): wake an idle agent (this one, just registered, if it is the
  -- freshest), so the rest is not left to the fallback poll.
  if not rounds_left and got < wanted then
    local function as_map(flat)
      local t = {}
      for i = 1, #flat, 2 do
        t[flat[i]] = flat[i + 1]
      end
      return t
    end
    local function claimable_left()
      if more_due then
        return true
      end
      local last = as_map(redis.call('XINFO', 'STREAM', K_READY))['last-generated-id']
      for _, group in ipairs(redis.call('XINFO', 'GROUPS', K_READY)) do
        local g = as_map(group)
        if g['name'] == GROUP then
          return g['last-delivered-id'] ~= last  -- entries never delivered remain
        end
      end
      return false
    end
    if claimable_left() then
      wake_one(now_ms)
    end
  end
elseif more_due and (not limit or limit > active) then
  -- Busy now, with more due and room left: pass the wake-up on to the next idle agent.
  wake_one(now_ms, agent)
else
  redis.call('ZREM', K_WAITERS, agent)
end

-- The lease clock's tick (unless already at this millisecond) and the claim counter.
local fields = {}
if stall_seen then
  fields = {'stalled', stalled}
end
if stall_seen or tonumber(config[3]) ~= now_ms then
  fields[#fields + 1], fields[#fields + 2] = 'tick', now_ms
end
if generation ~= first_generation then
  fields[#fields + 1], fields[#fields + 2] = 'generation', generation
end
if #fields > 0 then
  redis.call('HSET', K_CONFIG, unpack(fields))
end
return claimed
