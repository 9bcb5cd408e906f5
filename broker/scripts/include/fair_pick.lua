-- fair_pick.lua: the claim's choice of due runs on a queue with fair sharing.
-- Needs KEYS: scheduled
-- Includes: indexes
--
-- Round-robin over the values' lines (include/fair_line.lua), least recently served
-- first: each round gives every value with a due run one turn, then one turn goes to the
-- queue's own due order, so a run no line holds (put back on the queue before fair
-- sharing was set) is reached too. Picked runs leave `scheduled` here. Cost: the values
-- looked at (at most FAIR_VALUES) and the runs picked, never a value's backlog.
local FAIR_VALUES = 100  -- values looked at per claim, least recently served first
local FAIR_STALE = 8  -- stale line entries skipped per value per turn at most

-- The head of `value`'s line if it is due by `due_by` and still scheduled (stale heads
-- are dropped on the way), or nil.
local function fair_head(value, due_by)
  local line = index_key('fair', value)
  for _ = 1, FAIR_STALE do
    local first = redis.call('ZRANGEBYSCORE', line, '-inf', due_by, 'LIMIT', 0, 1)[1]
    if not first then
      return nil
    end
    redis.call('ZREM', line, first)
    if redis.call('ZREM', K_SCHEDULED, first) == 1 then
      return first
    end
  end
  return nil
end

-- Up to `want` due run ids, taken out of `scheduled`; and whether runs stay due.
local function fair_pick(due_by, want)
  local turns = index_key('fair-turns', '')
  local last = redis.call('ZRANGE', turns, -1, -1, 'WITHSCORES')
  local turn = tonumber(last[2] or '0')
  local live = redis.call('ZRANGE', turns, 0, FAIR_VALUES - 1)
  local picked = {}
  while #picked < want do
    local next_round = {}
    for _, value in ipairs(live) do
      if #picked >= want then
        break
      end
      local head = fair_head(value, due_by)
      if head then
        picked[#picked + 1] = head
        turn = turn + 1
        redis.call('ZADD', turns, turn, value)
        next_round[#next_round + 1] = value
      elseif redis.call('EXISTS', index_key('fair', value)) == 0 then
        redis.call('ZREM', turns, value)  -- an empty line: the value is gone
      end
    end
    if #picked >= want then
      break
    end
    local first = redis.call('ZRANGEBYSCORE', K_SCHEDULED, '-inf', due_by, 'LIMIT', 0, 1)[1]
    if first then  -- the queue's own due order gets a turn each round
      redis.call('ZREM', K_SCHEDULED, first)
      picked[#picked + 1] = first
    elseif #next_round == 0 then
      break
    end
    live = next_round
  end
  local more = #redis.call('ZRANGEBYSCORE', K_SCHEDULED, '-inf', due_by, 'LIMIT', 0, 1) > 0
  return picked, more
end
