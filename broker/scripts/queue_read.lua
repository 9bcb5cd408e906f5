#!lua flags=no-writes
-- queue_read.lua: one consistent snapshot of a work queue and its counters.
-- KEYS[1] config       HASH   the queue's settings and counters
-- KEYS[2] ready        STREAM released runs; group "agents"
-- KEYS[3] scheduled    ZSET   run id -> due time (ms)
-- KEYS[4] active       ZSET   run id -> lease deadline: its size is the slots taken
-- KEYS[5] agents       ZSET   agent id -> last poll (ms)
-- ARGV[1] agents_window_ms  agents that polled within this window are listed
-- ARGV[2] late_after_ms     a SCHEDULED run this far past its due time is late
-- Includes: basics
-- Reply: {config HASH flat, active count, scheduled count, {agent id, last poll ms, ...},
--         last poll of any agent (ms, or false), late runs count}
--        or an empty array when the queue does not exist
-- Scheduled runs are those in the scheduled ZSET plus those released into the stream but
-- not yet delivered (every acknowledged entry is deleted, so XLEN - pending counts them).

local config = redis.call('HGETALL', K_CONFIG)
if #config == 0 then
  return {}
end
local _, now_ms = clock()
local pending = redis.call('XPENDING', K_READY, GROUP)[1]
local undelivered = redis.call('XLEN', K_READY) - pending
local agents = redis.call('ZRANGEBYSCORE', K_AGENTS, str(now_ms - tonumber(ARGV[1])), '+inf',
                          'WITHSCORES')
local last = redis.call('ZREVRANGE', K_AGENTS, 0, 0, 'WITHSCORES')[2] or false
local late = redis.call('ZCOUNT', K_SCHEDULED, '-inf', '(' .. str(now_ms - tonumber(ARGV[2])))
return {config, redis.call('ZCARD', K_ACTIVE), redis.call('ZCARD', K_SCHEDULED) + undelivered,
        agents, last, late}
