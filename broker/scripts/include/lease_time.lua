-- lease_time.lua: the clock leases run on, which stands still while Redis stalls.
-- Needs KEYS: none
-- Includes: none
--
-- The lease clock (ms) is Redis' clock minus every gap in which this queue's scripts saw
-- Redis process nothing (a SIGSTOP, a fork, a slow disk, a failover, a restart). Lease
-- deadlines in `active` are on this clock, so time in which no owner could have renewed
-- its lease does not count against it. A gap is a pause of more than half a lease since
-- the last script on this queue (live owners renew, and live agents sweep, more often
-- than that); the queue's config keeps `tick` (the last script's time) and `stalled`
-- (the sum of the gaps). lease_clock.lua reads and writes them; the claim reads them
-- with the rest of the config and writes them once at its end.

-- The lease clock from the config's `tick` and `stalled` as read, without writing:
-- returns it, the new `stalled`, and whether this call saw a gap.
local function lease_time(now_ms, lease_ms, tick, stalled)
  tick, stalled = tonumber(tick), tonumber(stalled) or 0
  if tick and now_ms - tick > lease_ms / 2 then
    stalled = stalled + (now_ms - tick)
    return now_ms - stalled, stalled, true
  end
  return now_ms - stalled, stalled, false
end
