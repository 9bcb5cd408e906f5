-- basics.lua: what nearly every script uses: numbers as text, runq's error replies,
-- Redis' clock and the name of the queue stream's consumer group.
-- Needs KEYS: none
-- Includes: none

local GROUP = 'agents'  -- the consumer group of every queue's ready stream

-- Numbers made into text go through str(): Lua's own conversion (`..`, tostring) prints
-- large numbers as 1.7e+15 and loses digits. A number handed to redis.call as it is is
-- formatted by Redis itself, exactly (Redis 6.2 and 7), which the claim relies on.
local function str(n)
  return string.format('%.0f', n)
end

-- Errors are returned (never raised) as "RUNQ <CODE> <detail>", which broker/errors.py
-- maps to exceptions; every check happens before the first write, because a script's
-- writes are never rolled back.
local function fail(code, detail)
  return redis.error_reply('RUNQ ' .. code .. ' ' .. (detail or ''))
end

-- Redis' own clock, as (microseconds, milliseconds): the only clock runq trusts.
local function clock()
  local t = redis.call('TIME')
  local s, u = tonumber(t[1]), tonumber(t[2])
  return s * 1000000 + u, s * 1000 + math.floor(u / 1000)
end
