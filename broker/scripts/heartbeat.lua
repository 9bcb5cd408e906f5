#!lua flags=allow-oom
-- heartbeat.lua: renew the leases of runs an agent or engine still owns.
-- KEYS: the queue keys listed in _common.lua
-- ARGV[1] lease_ms          new lease, from now
-- ARGV[2..] run_id, token   pairs
-- Reply: one entry per run: its state type (so the owner learns of CANCELLING), or
--        "STALE" (the claim was lost to another owner) or "GONE" (no such run)
-- Only a live claim (PENDING, RUNNING or CANCELLING, holding a slot) is renewed.
-- Runs under full memory (a renewal overwrites, it does not grow): a refused heartbeat
-- must never be what turns a healthy run CRASHED.

local now_us, now_ms = clock()
local lease_ms = tonumber(ARGV[1])
local lease_until = str(lease_clock(now_ms, lease_ms, true) + lease_ms)
local live = {PENDING = true, RUNNING = true, CANCELLING = true}
local reply = {}
for i = 2, #ARGV, 2 do
  local run_id, token = ARGV[i], ARGV[i + 1]
  local run_key = K_RUN .. run_id
  local current = redis.call('HMGET', run_key, 'st', 'token')
  if not current[1] then
    table.insert(reply, 'GONE')
  elseif not owns(current[2], token) then
    table.insert(reply, 'STALE')
  else
    if live[current[1]] and redis.call('ZSCORE', K_ACTIVE, run_id) then
      redis.call('ZADD', K_ACTIVE, 'XX', lease_until, run_id)
      redis.call('HSET', run_key, 'hb', str(now_us))
    end
    table.insert(reply, current[1])
  end
end
return reply
