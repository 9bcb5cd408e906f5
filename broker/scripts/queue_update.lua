#!lua
-- queue_update.lua: change a work queue's settings and wake its agents.
-- KEYS[1] config       HASH   the queue's settings
-- KEYS[2] scheduled    ZSET   run id -> due time (ms): is there work to wake for
-- KEYS[3] waiters      ZSET   idle agent id -> registration deadline (ms)
-- KEYS[4] wake         channel wake-ups of the queue's agents
-- KEYS[5] events       channel "queue" (watchers)
-- ARGV[1] name         the queue's name (for the error)
-- ARGV[2..] field, value   pairs among description, concurrency_limit, is_paused,
--                      fair_by; an empty value removes the field (a cleared limit)
-- Includes: basics, wake, event
-- Reply: the config HASH as a flat array
-- Errors: QUEUE_NOT_FOUND <name>; BAD_FIELD <field> for any other field (nothing written)
-- Pausing here is what makes "after pause returns, no claim returns a run" true: the
-- claim script reads is_paused in the same atomic step that hands out runs. Several
-- fields (work-queue update -d TEXT -l N) change in this one step, or none does.

local SETTINGS = {description = true, concurrency_limit = true, is_paused = true,
                  fair_by = true}
if redis.call('EXISTS', K_CONFIG) == 0 then
  return fail('QUEUE_NOT_FOUND', ARGV[1])
end
for i = 2, #ARGV, 2 do
  if not SETTINGS[ARGV[i]] then
    return fail('BAD_FIELD', ARGV[i])
  end
end
local now_us, now_ms = clock()
redis.call('HSET', K_CONFIG, 'updated', str(now_us))  -- first: refused whole if memory is full
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', K_CONFIG, ARGV[i])
  else
    redis.call('HSET', K_CONFIG, ARGV[i], ARGV[i + 1])
  end
end
signal_work(now_ms)
event('queue')
return redis.call('HGETALL', K_CONFIG)
