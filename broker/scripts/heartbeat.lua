#!lua flags=allow-oom
-- heartbeat.lua: renew the leases of runs an agent or engine still owns.
-- KEYS[1] config      HASH   the queue's lease clock
-- KEYS[2] active      ZSET   run id -> lease deadline (ms, lease clock)
-- KEYS[3..] run       HASH   the record of each run, in the order of ARGV's pairs
-- ARGV[1] lease_ms          new lease, from now
-- ARGV[2..] run_id, token   pairs
-- Includes: basics, lease_clock, owns
-- Reply: one entry per run: its state type (so the owner learns of CANCELLING), or
--        "STALE" (the claim was lost to another owner) or "GONE" (no such run)
-- Only a live claim (PENDING, RUNNING or CANCELLING, holding a slot) is renewed.
-- Runs under full memory (a renewal overwrites, it does not grow): a refused heartbeat
-- must never be what turns a healthy run CRASHED. Its first write is the lease clock's
-- removal of the tick (lease_clock.lua).

local now_us, now_ms = clock()
local lease_ms = tonumber(ARGV[1])
local lease_number = lease_clock(now_ms, lease_ms, true) + lease_ms
local lease_until = str(lease_number)
local live = {PENDING = true, RUNNING = true, CANCELLING = true}
local reply = {}
for i = 2, #ARGV, 2 do
  local run_id, token, run_key = ARGV[i], ARGV[i + 1], KEYS[2 + i / 2]
  local current = redis.call('HMGET', run_key, 'st', 'token', 'dl')
  if not current[1] then
    table.insert(reply, 'GONE')
  elseif not owns(current[2], token) then
    table.insert(reply, 'STALE')
  else
    if live[current[1]] and redis.call('ZSCORE', K_ACTIVE, run_id) then
      local deadline = tonumber(current[3] or '')  -- a timeout: no renewal past it
      redis.call('ZADD', K_ACTIVE, 'XX', deadline and str(math.min(deadline, lease_number))
                 or lease_until, run_id)
      redis.call('HSET', run_key, 'hb', str(now_us))
    end
    table.insert(reply, current[1])
  end
end
return reply
