-- lease_clock.lua: read and advance the lease clock (lease_time.lua) of the queue.
-- Needs KEYS: config
-- Includes: basics, lease_time

-- Read and advance the lease clock. Its HSET is the caller's first write: under full
-- memory Redis 6.2 refuses it, and so the whole script, before anything is written. A
-- script that must still run (must_run: heartbeat, sweep) first removes the tick, a write
-- Redis 6.2 lets through, which lets the rest through too.
local function lease_clock(now_ms, lease_ms, must_run)
  local seen = redis.call('HMGET', K_CONFIG, 'tick', 'stalled', 'id')
  if not seen[3] then
    return now_ms  -- a deleted queue: never write a config back
  end
  local lease_now, stalled, changed = lease_time(now_ms, lease_ms, seen[1], seen[2])
  if must_run then
    redis.call('HDEL', K_CONFIG, 'tick')
  end
  if changed then
    redis.call('HSET', K_CONFIG, 'tick', str(now_ms), 'stalled', str(stalled))
  else
    redis.call('HSET', K_CONFIG, 'tick', str(now_ms))
  end
  return lease_now
end
