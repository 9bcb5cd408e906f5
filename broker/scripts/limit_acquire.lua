#!lua
-- limit_acquire.lua: a claimed run takes one slot of a named concurrency limit, or waits.
-- KEYS[1] config         HASH   the limit's settings
-- KEYS[2] values         SET    the values with holders or waiting runs
-- KEYS[3] holders        ZSET   run id -> when it took its slot (ms)
-- KEYS[4] claims         HASH   run id -> the holder's claim id
-- KEYS[5] waiting        ZSET   run id -> due time (ms): runs waiting for a slot
-- KEYS[6] notified       ZSET   run id -> until when a waiter sent back keeps its turn
-- KEYS[7] where          HASH   run id -> its queue
-- KEYS[8] starts         ZSET   start id -> when (ms): slots taken in the rate's window
-- ARGV[1] run_id
-- ARGV[2] claim_id       the SHA-1 of the run's fencing token: releases must name it
-- ARGV[3] queue          the run's work queue (where a waiting run is sent back)
-- ARGV[4] due_ms         the run's due time: waiting runs are served in due order
-- ARGV[5] value          the tag's value under a KEY:* limit ("" for a plain limit)
-- ARGV[6] notify_ms      how long a waiter sent back to its queue keeps its turn
-- Includes: basics, limit_turns
-- Reply: {"ok", run, queue, ...} the slot is taken; {"gone"} no such limit (nothing to
--        hold); {"wait", in_use, run, queue, ...} the run waits (it is in `waiting`).
--        Both "ok" and "wait" list the waiting runs this call sent back to their queues.
-- Taking the slot again under the same claim id is "ok" and changes nothing, so a
-- caller may repeat the call after a lost reply.

local run_id, claim_id, queue = ARGV[1], ARGV[2], ARGV[3]
local due, value, notify_ms = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local settings = limit_settings()
if not settings then
  return {'gone'}
end
if redis.call('HGET', K_CLAIMS, run_id) == claim_id then
  return {'ok'}
end
local _, now_ms = clock()
forget_lapsed(now_ms)
local free, in_use = free_slots(settings, now_ms)
local send = {}
local ahead = turns_ahead(free, now_ms, notify_ms, send, run_id, due)
if free - ahead > 0 then
  redis.call('ZADD', K_HOLDERS, str(now_ms), run_id)
  redis.call('HSET', K_CLAIMS, run_id, claim_id)
  redis.call('HSET', K_WHERE, run_id, queue)
  redis.call('ZREM', K_WAITING, run_id)
  redis.call('ZREM', K_NOTIFIED, run_id)
  if settings.rate_count then
    redis.call('ZADD', K_STARTS, str(now_ms), run_id .. ':' .. claim_id)
  end
  redis.call('SADD', K_VALUES, value)
  return {'ok', unpack(send)}
end
redis.call('ZADD', K_WAITING, 'NX', str(due), run_id)
redis.call('ZREM', K_NOTIFIED, run_id)  -- back in line: its turn is not kept
redis.call('HSET', K_WHERE, run_id, queue)
redis.call('SADD', K_VALUES, value)
return {'wait', in_use, unpack(send)}
