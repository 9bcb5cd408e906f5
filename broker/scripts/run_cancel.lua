#!lua
-- run_cancel.lua: the operator's cancel of a flow run (no fencing token: it is not the
-- run's owner, and this is the one state change of a claimed run it may make).
-- KEYS: the queue keys listed in _common.lua
-- ARGV[1] run_id
-- ARGV[2] message        why, for people
-- ARGV[3] retention_ms   when the sweep purges the record of a run cancelled at once
-- Reply: the run HASH as a flat array
-- Errors: RUN_NOT_FOUND <id>, BAD_TRANSITION <id> <current> CANCELLED
-- A run nobody has started (SCHEDULED, PENDING) is CANCELLED at once and its slot freed;
-- a RUNNING run becomes CANCELLING and its owner is told (the "cancel ID" wake-up and
-- the heartbeat reply) to stop its infrastructure and mark it CANCELLED.

local run_id, message, retention_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local run_key = K_RUN .. run_id
local current = redis.call('HGET', run_key, 'st')
if not current then
  return fail('RUN_NOT_FOUND', run_id)
end
local now_us, now_ms = clock()
if current == 'SCHEDULED' or current == 'PENDING' then
  finish(run_id, run_key, 'CANCELLED', 'Cancelled', message, now_us, now_ms, retention_ms)
elseif current == 'RUNNING' then
  set_state(run_id, run_key, 'CANCELLING', 'Cancelling', message, now_us)
  publish('cancel ' .. run_id)
else
  return fail('BAD_TRANSITION', run_id .. ' ' .. current .. ' CANCELLED')
end
return redis.call('HGETALL', run_key)
