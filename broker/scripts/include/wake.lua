-- wake.lua: wake-ups on the queue's channels (agent/wakeup.py listens).
-- Needs KEYS: scheduled, wake, waiters
-- Includes: basics
--
-- "cancel ID", "deleted" and the like go to every agent on the queue's channel K_WAKE
-- (broadcast). "wake" (new work, a freed slot) goes to one idle agent: a waiter in
-- K_WAITERS (registered by claim.lua when a claim got less than it asked, until its score,
-- a deadline in ms), freshest first, on its own channel K_WAKE .. ':' .. agent id (a
-- channel named by data read here, in the queue's slot). A waiter nobody hears on that
-- channel (a dead agent) is dropped and the next one tried; with none heard, "wake" goes
-- to every agent; with no run scheduled (a freed slot nobody waits for) it goes to
-- nobody (signal_work). A woken agent that takes all it asked for while more is due
-- wakes the next one (claim.lua), so one wake-up per change suffices however many runs
-- it made claimable.
-- The loader makes WAKE_PUBLISH 'SPUBLISH' on a Redis 7 cluster: sharded, it stays on the
-- queue's node. WAKE_COUNTED says whether the reply of WAKE_PUBLISH counts every
-- subscriber: true on one server and with SPUBLISH; the loader makes it false on a
-- cluster without sharded pub/sub (Redis 6.2), where PUBLISH counts only the subscribers
-- of the node the script runs on while the message still reaches the others over the
-- cluster bus. There a count of 0 proves nothing, so no waiter is judged dead (none is
-- dropped) and "wake" is broadcast on K_WAKE: every agent of the queue hears it (each
-- claims; those that get nothing register again).
local WAKE_PUBLISH = 'PUBLISH'
local WAKE_COUNTED = true
local WAKE_TRIES = 8  -- dead waiters dropped per wake-up at most (the rest expire)

-- "wake" to the freshest live waiter that hears it; false when none did. `now_ms` is the
-- calling script's Redis time: waiters whose deadline passed are dropped, not woken.
-- `leaving`, if given, is an agent that stops waiting now (a claim that got all it asked
-- for): it leaves the waiters and is not woken.
local function wake_waiter(now_ms, leaving)
  if not WAKE_COUNTED then
    if leaving then
      redis.call('ZREM', K_WAITERS, leaving)
    end
    return false  -- no liveness to judge by: the caller broadcasts
  end
  local popped = redis.call('ZPOPMAX', K_WAITERS)
  if #popped == 0 then
    return false  -- nobody waits (`leaving` included)
  end
  if leaving and popped[1] ~= leaving then
    redis.call('ZREM', K_WAITERS, leaving)
  end
  redis.call('ZREMRANGEBYSCORE', K_WAITERS, '-inf', str(now_ms))  -- the expired ones
  local tries = 0
  while true do
    if popped[1] ~= leaving then
      if tonumber(popped[2]) <= now_ms then
        return false  -- expired, and so was every other waiter (this was the freshest)
      end
      if redis.call(WAKE_PUBLISH, K_WAKE .. ':' .. popped[1], 'wake') > 0 then
        return true
      end
      tries = tries + 1
      if tries == WAKE_TRIES then
        return false
      end
    end
    popped = redis.call('ZPOPMAX', K_WAITERS)
    if #popped == 0 then
      return false
    end
  end
end

-- "wake" to one idle agent, or to every agent when no waiter hears it (`leaving`: see
-- wake_waiter).
local function wake_one(now_ms, leaving)
  if not wake_waiter(now_ms, leaving) then
    redis.call(WAKE_PUBLISH, K_WAKE, 'wake')
  end
end

-- New work or a freed slot: "wake" to one agent, unless no run is scheduled at all (a
-- freed slot with nothing waiting for it: no agent has anything to claim).
local function signal_work(now_ms)
  if redis.call('ZCARD', K_SCHEDULED) > 0 then
    wake_one(now_ms)
  end
end

-- A message for every agent of the queue: "cancel ID", "deleted".
local function broadcast(message)
  redis.call(WAKE_PUBLISH, K_WAKE, message)
end
