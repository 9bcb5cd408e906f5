-- limit_turns.lua: whose turn it is at one value of a named concurrency limit.
-- Needs KEYS: config, holders, waiting, notified, where, starts
-- Includes: basics
--
-- A slot is free when the holders are fewer than the limit and, with a rate, fewer
-- slots were taken within the rate's window than it allows. Waiting runs get free slots
-- in due order: the earliest are sent back to their queues ("notified") and keep their
-- turn for notify_ms, so a run that was not waiting cannot take the slot meanwhile. A
-- notified run whose queue did not claim it in that time (paused, no agent) stops
-- blocking the others and is sent back again at the next free slot.

-- The limit's settings: limit (nil: no cap on holders), rate count and window (nil: no
-- rate), or nil when the limit does not exist.
local function limit_settings()
  local c = redis.call('HMGET', K_CONFIG, 'created', 'limit', 'rate_count', 'rate_ms')
  if not c[1] then
    return nil
  end
  return {limit = tonumber(c[2]), rate_count = tonumber(c[3]), rate_ms = tonumber(c[4])}
end

-- How many slots are free now (at most 1000), and the slots in use.
local function free_slots(settings, now_ms)
  local in_use = redis.call('ZCARD', K_HOLDERS)
  local free = 1000
  if settings.limit then
    free = math.min(free, settings.limit - in_use)
  end
  if settings.rate_count then
    redis.call('ZREMRANGEBYSCORE', K_STARTS, '-inf', str(now_ms - settings.rate_ms))
    free = math.min(free, settings.rate_count - redis.call('ZCARD', K_STARTS))
  end
  return math.max(free, 0), in_use
end

-- Of the first `free` waiting runs (other than `run_id`, due before `due` if given),
-- how many keep their turn; those not yet notified are notified now and appended to
-- `send` as run id, queue pairs (the caller puts them back in their queues).
local function turns_ahead(free, now_ms, notify_ms, send, run_id, due)
  if free <= 0 then
    return 0
  end
  local ahead = 0
  local first = redis.call('ZRANGE', K_WAITING, 0, free - 1, 'WITHSCORES')
  for i = 1, #first, 2 do
    local waiter, waiter_due = first[i], tonumber(first[i + 1])
    if waiter ~= run_id and (not due or waiter_due < due
                             or (waiter_due == due and waiter < run_id)) then
      local until_ms = tonumber(redis.call('ZSCORE', K_NOTIFIED, waiter))
      if not until_ms then
        redis.call('ZADD', K_NOTIFIED, str(now_ms + notify_ms), waiter)
        send[#send + 1] = waiter
        send[#send + 1] = redis.call('HGET', K_WHERE, waiter) or ''
        ahead = ahead + 1
      elseif until_ms > now_ms then
        ahead = ahead + 1
      end
    end
  end
  return ahead
end

-- Notified runs whose turn lapsed are notified again from the next pass on.
local function forget_lapsed(now_ms)
  redis.call('ZREMRANGEBYSCORE', K_NOTIFIED, '-inf', str(now_ms))
end
