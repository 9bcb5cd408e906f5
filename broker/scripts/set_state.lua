#!lua
-- set_state.lua: move a flow run to a new state, compare-and-set on its current state.
-- KEYS: the queue keys listed in _common.lua
-- ARGV[1] run_id
-- ARGV[2] state type     RUNNING | CANCELLING | SCHEDULED | a terminal type
-- ARGV[3] state name     e.g. "Running", "AwaitingRetry"; cut to NAME_MAX (256) bytes
-- ARGV[4] message        "" for none
-- ARGV[5] token          fencing token of the caller's claim; "" only for a run nobody
--                        holds (unclaimed SCHEDULED, or ended): a claimed run (PENDING,
--                        RUNNING, CANCELLING) changes state only with its claim's token;
--                        the operator's cancel is run_cancel.lua
-- ARGV[6] from states    space-separated state types the run may leave
-- ARGV[7] due_ms         SCHEDULED only: absolute due time, "" for now
-- ARGV[8] lease_ms       the lease granted from now (RUNNING); a longer pause is a stall
-- ARGV[9] retention_ms   terminal only: when the sweep purges the record (expiry 1 h later)
-- ARGV[10] queue_name    the queue's name (for the error)
-- ARGV[11..] field, value pairs stored on the record (result, infra)
-- Reply: the run HASH as a flat array
-- Errors: RUN_NOT_FOUND <id>, BAD_TRANSITION <id> <current> <target>, STALE <id>,
--         UNFENCED <id> (no token for a claimed run), QUEUE_NOT_FOUND <name> (SCHEDULED
--         on a deleted queue: the run would wait on a queue nobody lists)
-- A stale owner (its claim expired and the run was claimed again) presents an old token
-- and is rejected, so it can neither finish nor restart a run it no longer owns.

local run_id, to_type, to_name, message = ARGV[1], ARGV[2], capped(ARGV[3], NAME_MAX), ARGV[4]
local token, from_states = ARGV[5], ' ' .. ARGV[6] .. ' '
local run_key = K_RUN .. run_id

local current = redis.call('HMGET', run_key, 'st', 'token')
if not current[1] then
  return fail('RUN_NOT_FOUND', run_id)
end
if not string.find(from_states, ' ' .. current[1] .. ' ', 1, true) then
  return fail('BAD_TRANSITION', run_id .. ' ' .. current[1] .. ' ' .. to_type)
end
local claimed = {PENDING = true, RUNNING = true, CANCELLING = true}
if token == '' and current[2] and claimed[current[1]] then
  return fail('UNFENCED', run_id)
end
if token ~= '' and not owns(current[2], token) then
  return fail('STALE', run_id)
end
local terminal = {COMPLETED = true, FAILED = true, CANCELLED = true, CRASHED = true}
if not (terminal[to_type] or to_type == 'RUNNING' or to_type == 'CANCELLING'
        or to_type == 'SCHEDULED') then
  return fail('BAD_TRANSITION', run_id .. ' ' .. current[1] .. ' ' .. to_type)
end
if to_type == 'SCHEDULED' and redis.call('EXISTS', K_CONFIG) == 0 then
  return fail('QUEUE_NOT_FOUND', ARGV[10])
end

local now_us, now_ms = clock()
local lease_now = lease_clock(now_ms, tonumber(ARGV[8]), false)  -- the first write
for i = 11, #ARGV, 2 do
  redis.call('HSET', run_key, ARGV[i], ARGV[i + 1])
end
if to_type == 'RUNNING' then
  set_state(run_id, run_key, to_type, to_name, message, now_us)
  redis.call('HINCRBY', run_key, 'count', 1)
  redis.call('HSETNX', run_key, 'start', str(now_us))
  redis.call('HSET', run_key, 'hb', str(now_us))
  redis.call('ZADD', K_ACTIVE, 'XX', str(lease_now + tonumber(ARGV[8])), run_id)
elseif to_type == 'CANCELLING' then
  set_state(run_id, run_key, to_type, to_name, message, now_us)
  publish('cancel ' .. run_id)
elseif to_type == 'SCHEDULED' then
  local due = now_ms
  if ARGV[7] ~= '' then
    due = tonumber(ARGV[7])
  end
  requeue(run_id, run_key, to_name, message, due, now_us)
else
  finish(run_id, run_key, to_type, to_name, message, now_us, now_ms, tonumber(ARGV[9]))
end
return redis.call('HGETALL', run_key)
