#!lua
-- run_annotate.lua: record facts about a run its current owner learned (where it runs).
-- KEYS[1] run          HASH   the run's record
-- ARGV[1] run_id
-- ARGV[2] token        the owner's fencing token
-- ARGV[3..] field, value   pairs among: infra
-- Includes: basics, owns
-- Reply: 1
-- Errors: RUN_NOT_FOUND <id>, STALE <id>

local run_id, token = ARGV[1], ARGV[2]
local current = redis.call('HGET', K_RUN, 'token')
if redis.call('EXISTS', K_RUN) == 0 then
  return fail('RUN_NOT_FOUND', run_id)
end
if not owns(current, token) then
  return fail('STALE', run_id)
end
for i = 3, #ARGV, 2 do
  redis.call('HSET', K_RUN, ARGV[i], ARGV[i + 1])
end
return 1
