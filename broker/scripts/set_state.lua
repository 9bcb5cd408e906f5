#!lua
-- set_state.lua: move a flow run to a new state, compare-and-set on its current state.
-- KEYS[1] run            HASH   the run's record
-- KEYS[2] logs           STREAM its log lines (expire with the record once it ended)
-- KEYS[3] history        LIST   its state history
-- KEYS[4] config         HASH   the queue's settings and lease clock
-- KEYS[5] active         ZSET   run id -> lease deadline (ms, lease clock)
-- KEYS[6] ready          STREAM released runs (a run's entry is trimmed when it ends)
-- KEYS[7] scheduled      ZSET   run id -> due time (ms)
-- KEYS[8] done           ZSET   run id -> end time (ms)
-- KEYS[9] ended_index    HASH   what the purge of an ended run must remove
-- KEYS[10] waiters       ZSET   idle agent id -> registration deadline (ms)
-- KEYS[11] wake          channel wake-ups of the queue's agents
-- KEYS[12] events        channel every change of a run (watchers)
-- KEYS[13] index_prefix  slot-sharing prefix of the listing indexes (named by the state
--                        the record holds)
-- KEYS[14] auto_prefix   slot-sharing prefix of the deployments' schedule-made sets
--                        (named by the deployment the record holds)
-- ARGV[1] run_id
-- ARGV[2] state_type     RUNNING | CANCELLING | SCHEDULED | a terminal type
-- ARGV[3] state_name     e.g. "Running", "AwaitingRetry"; cut to NAME_MAX (256) bytes
-- ARGV[4] message        "" for none
-- ARGV[5] token          fencing token of the caller's claim; "" only for a run nobody
--                        holds (unclaimed SCHEDULED, or ended): a claimed run (PENDING,
--                        RUNNING, CANCELLING) changes state only with its claim's token;
--                        the operator's cancel is run_cancel.lua
-- ARGV[6] from_states    space-separated state types the run may leave
-- ARGV[7] due_ms         SCHEDULED only: absolute due time, "" for now
-- ARGV[8] lease_ms       the lease granted from now (RUNNING); a longer pause is a stall
-- ARGV[9] retention_ms   terminal only: when the sweep purges the record (expiry 1 h later)
-- ARGV[10] queue_name    the queue's name (for the error)
-- ARGV[11..] field, value   pairs stored on the record (result, infra; at RUNNING rtr
--                        and rdl, the retries and retry delay a timeout applies)
-- A run with a timeout (`tmo`, ms) gets its deadline `dl` at RUNNING (lease clock): its
-- lease never runs past it, so the claim or the sweep that settles the lease ends it
-- TimedOut (include/reclaim.lua).
-- Includes: basics, history, owns, lease_clock, transition, requeue, finish, wake
-- Reply: the run HASH as a flat array
-- Errors: RUN_NOT_FOUND <id>, BAD_TRANSITION <id> <current> <target>, STALE <id>,
--         UNFENCED <id> (no token for a claimed run), QUEUE_NOT_FOUND <name> (SCHEDULED
--         on a deleted queue: the run would wait on a queue nobody lists)
-- A stale owner (its claim expired and the run was claimed again) presents an old token
-- and is rejected, so it can neither finish nor restart a run it no longer owns.
-- Full memory: the first write is the lease clock's HSET, refused (whole script
-- unwritten) when memory is full.

local run = {id = ARGV[1], key = K_RUN, logs = K_LOGS, history = K_HISTORY}
local to_type, to_name, message = ARGV[2], capped(ARGV[3], NAME_MAX), ARGV[4]
local token, from_states = ARGV[5], ' ' .. ARGV[6] .. ' '

local current = redis.call('HMGET', run.key, 'st', 'token')
if not current[1] then
  return fail('RUN_NOT_FOUND', run.id)
end
if not string.find(from_states, ' ' .. current[1] .. ' ', 1, true) then
  return fail('BAD_TRANSITION', run.id .. ' ' .. current[1] .. ' ' .. to_type)
end
local claimed = {PENDING = true, RUNNING = true, CANCELLING = true}
if token == '' and current[2] and claimed[current[1]] then
  return fail('UNFENCED', run.id)
end
if token ~= '' and not owns(current[2], token) then
  return fail('STALE', run.id)
end
local terminal = {COMPLETED = true, FAILED = true, CANCELLED = true, CRASHED = true}
if not (terminal[to_type] or to_type == 'RUNNING' or to_type == 'CANCELLING'
        or to_type == 'SCHEDULED') then
  return fail('BAD_TRANSITION', run.id .. ' ' .. current[1] .. ' ' .. to_type)
end
if to_type == 'SCHEDULED' and redis.call('EXISTS', K_CONFIG) == 0 then
  return fail('QUEUE_NOT_FOUND', ARGV[10])
end

local now_us, now_ms = clock()
local lease_now = lease_clock(now_ms, tonumber(ARGV[8]), false)  -- the first write
if #ARGV >= 11 then
  redis.call('HSET', run.key, unpack(ARGV, 11))
end
if to_type == 'RUNNING' then
  set_state(run, to_type, to_name, message, now_us)
  redis.call('HINCRBY', run.key, 'count', 1)
  redis.call('HSETNX', run.key, 'start', str(now_us))
  redis.call('HSET', run.key, 'hb', str(now_us))
  local lease_until = lease_now + tonumber(ARGV[8])
  local timeout_ms = tonumber(redis.call('HGET', run.key, 'tmo') or '')
  if timeout_ms then  -- its deadline, on the lease clock: no lease outlives it
    redis.call('HSET', run.key, 'dl', str(lease_now + timeout_ms))
    lease_until = math.min(lease_until, lease_now + timeout_ms)
  end
  redis.call('ZADD', K_ACTIVE, 'XX', str(lease_until), run.id)
elseif to_type == 'CANCELLING' then
  set_state(run, to_type, to_name, message, now_us)
  broadcast('cancel ' .. run.id)
elseif to_type == 'SCHEDULED' then
  local due = now_ms
  if ARGV[7] ~= '' then
    due = tonumber(ARGV[7])
  end
  requeue(run, to_name, message, due, now_us, now_ms)
else
  finish(run, to_type, to_name, message, now_us, now_ms, tonumber(ARGV[9]))
end
return redis.call('HGETALL', run.key)
