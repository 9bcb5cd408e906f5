#!lua
-- run_annotate.lua: record facts about a run its current owner learned (where it runs).
-- KEYS: the queue keys listed in _common.lua
-- ARGV[1] run_id
-- ARGV[2] token        the owner's fencing token
-- ARGV[3..] field, value pairs among: infra
-- Reply: 1
-- Errors: RUN_NOT_FOUND <id>, STALE <id>

local run_id, token = ARGV[1], ARGV[2]
local run_key = K_RUN .. run_id
local current = redis.call('HGET', run_key, 'token')
if redis.call('EXISTS', run_key) == 0 then
  return fail('RUN_NOT_FOUND', run_id)
end
if not owns(current, token) then
  return fail('STALE', run_id)
end
for i = 3, #ARGV, 2 do
  redis.call('HSET', run_key, ARGV[i], ARGV[i + 1])
end
return 1
