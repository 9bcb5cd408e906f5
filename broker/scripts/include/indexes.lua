-- indexes.lua: the listing indexes of a queue's runs (all in the queue's slot).
-- Needs KEYS: index_prefix
-- Includes: none
--
-- ZSETs of run ids scored by creation time (ms), named K_INDEX_PREFIX .. kind .. ':' ..
-- value (a slot-sharing prefix: the value is a run's state, deployment or flow, read from
-- its record or its arguments, so the key cannot be named before the script runs):
--   state:TYPE  every run in that state type
--   sname:NAME  runs whose state name is not its type's default ("AwaitingRetry")
--   dep:ID      a deployment's runs;  flow:NAME  a flow's runs
-- Two more have fixed names, passed in KEYS by the scripts that write them: the names
-- index (ZSET, score 0, members NAME .. "\0" .. ID: runs by name, ZRANGEBYLEX) and the
-- ended index (HASH run id -> JSON [type, name, dep, flow, run name, ikey] of every ended
-- run awaiting purge: what a purge must remove when the record expired first, its backstop
-- expiry, so no index entry outlives its run; each value lives as long as the run's entry
-- in `done`).

local function index_key(kind, value)
  return K_INDEX_PREFIX .. kind .. ':' .. value
end

-- The default display name of a state type ("CANCELLING" -> "Cancelling").
local function default_name(state_type)
  return string.sub(state_type, 1, 1) .. string.lower(string.sub(state_type, 2))
end

-- Creation time (ms) of a record's 'created' field (us): the score of its index entries
-- (a number: redis.call formats it exactly).
local function created_ms(created_us)
  return math.floor(tonumber(created_us or '0') / 1000)
end
