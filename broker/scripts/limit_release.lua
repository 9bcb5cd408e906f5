#!lua flags=allow-oom
-- limit_release.lua: a run gives back its slot of a named concurrency limit (or leaves
-- its line), and the freed slot goes to the next waiting run.
-- KEYS[1] config         HASH   the limit's settings
-- KEYS[2] values         SET    the values with holders or waiting runs
-- KEYS[3] holders        ZSET   run id -> when it took its slot (ms)
-- KEYS[4] claims         HASH   run id -> the holder's claim id
-- KEYS[5] waiting        ZSET   run id -> due time (ms)
-- KEYS[6] notified       ZSET   run id -> until when a waiter sent back keeps its turn
-- KEYS[7] where          HASH   run id -> its queue
-- KEYS[8] starts         ZSET   start id -> when (ms)
-- ARGV[1] run_id
-- ARGV[2] claim_id       only a holder under this claim id gives its slot back; "" for
--                        any (a run that ended or is gone from its queue)
-- ARGV[3] value          the tag's value ("" for a plain limit)
-- ARGV[4] notify_ms      how long a waiter sent back to its queue keeps its turn
-- Includes: basics, limit_turns
-- Reply: {released, run, queue, ...}: released 1 when a slot or a place in line was
--        given up, then the waiting runs to send back to their queues.
-- Called by whoever ends a run (the agent, the engine, the limit pass that finds a
-- holder's run ended), and for a waiting run that left its queue (cancelled, deleted).

local run_id, claim_id, value = ARGV[1], ARGV[2], ARGV[3]
local notify_ms = tonumber(ARGV[4])
local released = 0
local held = redis.call('HGET', K_CLAIMS, run_id)
if held and (claim_id == '' or held == claim_id) then
  redis.call('ZREM', K_HOLDERS, run_id)
  redis.call('HDEL', K_CLAIMS, run_id)
  redis.call('HDEL', K_WHERE, run_id)
  released = 1
elseif not held and claim_id == '' then
  released = redis.call('ZREM', K_WAITING, run_id)
  redis.call('ZREM', K_NOTIFIED, run_id)
  redis.call('HDEL', K_WHERE, run_id)
end
local send = {released}
local settings = limit_settings()
local _, now_ms = clock()
if settings then
  forget_lapsed(now_ms)
  turns_ahead(free_slots(settings, now_ms), now_ms, notify_ms, send)
end
if redis.call('ZCARD', K_HOLDERS) == 0 and redis.call('ZCARD', K_WAITING) == 0 then
  redis.call('SREM', K_VALUES, value)
end
return send
