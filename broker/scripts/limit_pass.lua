#!lua
-- limit_pass.lua: the periodic look at one value of a named concurrency limit: send
-- waiting runs back to their queues for the slots free now, and list the holders so
-- the caller can give back the slots of runs that ended without saying so.
-- KEYS[1] config         HASH   the limit's settings
-- KEYS[2] values         SET    the values with holders or waiting runs
-- KEYS[3] holders        ZSET   run id -> when it took its slot (ms)
-- KEYS[4] claims         HASH   run id -> the holder's claim id
-- KEYS[5] waiting        ZSET   run id -> due time (ms)
-- KEYS[6] notified       ZSET   run id -> until when a waiter sent back keeps its turn
-- KEYS[7] where          HASH   run id -> its queue
-- KEYS[8] starts         ZSET   start id -> when (ms)
-- ARGV[1] value          the tag's value ("" for a plain limit)
-- ARGV[2] notify_ms      how long a waiter sent back to its queue keeps its turn
-- ARGV[3] older_ms       list only holders that took their slot at least this long ago
-- ARGV[4] max_holders    list at most this many holders (the oldest first)
-- ARGV[5] resend         a run id whose turn, if it has one, is sent again ("" for
--                        none): its agent parked it after its turn came, so the first
--                        send found it still claimed and could not put it back
-- Includes: basics, limit_turns
-- Reply: {{run, queue, ...} sent back, {run, claim id, queue, ...} holders to check}
-- What a slot's release missed (its caller died between the run's end and the
-- release) is mended here: slots come back within one pass after the run's own lease.

local value, notify_ms = ARGV[1], tonumber(ARGV[2])
local older_ms, max_holders, resend = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local settings = limit_settings()
local _, now_ms = clock()
local send = {}
if settings then
  forget_lapsed(now_ms)
  turns_ahead(free_slots(settings, now_ms), now_ms, notify_ms, send)
  if resend ~= '' and redis.call('ZSCORE', K_NOTIFIED, resend) then
    send[#send + 1], send[#send + 2] = resend, redis.call('HGET', K_WHERE, resend) or ''
  end
end
local holders = {}
local old = redis.call('ZRANGEBYSCORE', K_HOLDERS, '-inf', str(now_ms - older_ms), 'LIMIT', 0,
                       max_holders)
for _, run_id in ipairs(old) do
  local n = #holders
  holders[n + 1] = run_id
  holders[n + 2] = redis.call('HGET', K_CLAIMS, run_id) or ''
  holders[n + 3] = redis.call('HGET', K_WHERE, run_id) or ''
end
if redis.call('ZCARD', K_HOLDERS) == 0 and redis.call('ZCARD', K_WAITING) == 0 then
  redis.call('SREM', K_VALUES, value)
end
return {send, holders}
