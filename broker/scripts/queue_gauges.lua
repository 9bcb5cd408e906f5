#!lua flags=no-writes
-- queue_gauges.lua: the figures a work queue's metrics show, read at scrape time.
-- KEYS[1] config       HASH   the queue's settings
-- KEYS[2] ready        STREAM released runs; group "agents"
-- KEYS[3] scheduled    ZSET   run id -> due time (ms)
-- KEYS[4] active       ZSET   run id -> lease deadline: its size is the slots taken
-- KEYS[5] agents       ZSET   agent id -> last poll (ms)
-- KEYS[6] run_prefix   slot-sharing prefix of the run records (the oldest undelivered
--                      run is read from the stream)
-- ARGV[1] agents_window_ms  agents that polled within this window are listed
-- ARGV[2] late_after_ms     a SCHEDULED run this far past its due time is late
-- Includes: basics, runs
-- Reply: {scheduled, due_now, late, active, limit ('' for none), paused (0|1),
--         {agent id, last poll ms, ...} (polled within the window; the caller keeps those
--         alive in the agents registry, a key outside this slot), oldest_due_age_ms,
--         now_ms (Redis' clock: the caller judges the agents' polls by it)}
--        or an empty array when the queue does not exist
-- Counted as queue_read.lua counts them (work-queue inspect shows the same figures):
-- waiting runs are the schedule's plus the stream entries released to agents but not yet
-- delivered (those were due, give or take the prefetch, when released). "Due now" is the
-- claimable backlog KEDA scales on: waiting runs whose due time has come. The stream's
-- own length or lag is not the backlog: runs enter it only when an agent claims.
-- Cost: a few O(log n) reads, and one record read when undelivered entries exist.

local _, now_ms = clock()
local config = redis.call('HMGET', K_CONFIG, 'id', 'concurrency_limit', 'is_paused')
if not config[1] then
  return {}
end

local pending = redis.call('XPENDING', K_READY, GROUP)[1]
local undelivered = redis.call('XLEN', K_READY) - pending
local scheduled = redis.call('ZCARD', K_SCHEDULED)
local due_now = redis.call('ZCOUNT', K_SCHEDULED, '-inf', str(now_ms))
local late = redis.call('ZCOUNT', K_SCHEDULED, '-inf', '(' .. str(now_ms - tonumber(ARGV[2])))
local agents = redis.call('ZRANGEBYSCORE', K_AGENTS, str(now_ms - tonumber(ARGV[1])), '+inf',
                          'WITHSCORES')

-- The oldest due time among waiting runs: the schedule's first, or the first entry
-- released but not delivered (released first, so the oldest of the stream's).
local oldest = nil
local first = redis.call('ZRANGE', K_SCHEDULED, 0, 0, 'WITHSCORES')
if first[2] and tonumber(first[2]) <= now_ms then
  oldest = tonumber(first[2])
end
if undelivered > 0 then
  local last_delivered = nil
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', K_READY)) do
    for i = 1, #group, 2 do
      if group[i] == 'name' and group[i + 1] == GROUP then
        for j = 1, #group, 2 do
          if group[j] == 'last-delivered-id' then
            last_delivered = group[j + 1]
          end
        end
      end
    end
  end
  if last_delivered then
    local entry = redis.call('XRANGE', K_READY, '(' .. last_delivered, '+', 'COUNT', 1)[1]
    local due = entry and tonumber(redis.call('HGET', run_keys(entry[2][2]).key, 'due'))
    if due and due <= now_ms and (oldest == nil or due < oldest) then
      oldest = due
    end
  end
  due_now = due_now + undelivered
end

return {scheduled + undelivered, due_now, late, redis.call('ZCARD', K_ACTIVE),
        config[2] or '', config[3] == '1' and 1 or 0, agents,
        oldest and str(now_ms - oldest) or '0', str(now_ms)}
