#!lua
-- limit_save.lua: create or change a named concurrency limit.
-- KEYS[1] config         HASH   the limit's settings
-- ARGV[1] mode           "create" (refused if it exists) | "update" (if it exists) |
--                        "put" (either: a deployment's own limit follows its record)
-- ARGV[2] name           the limit's name (for the errors)
-- ARGV[3..] field, value the settings to write: limit, rate_count, rate_ms,
--                        description; an empty value removes the field
-- Includes: basics
-- Reply: the limit's HASH as a flat array
-- Errors: LIMIT_EXISTS <name>, LIMIT_NOT_FOUND <name>
-- The caller sends waiting runs back to their queues afterwards (limit_pass.lua): a
-- raised limit frees slots for runs already waiting.

local mode, name = ARGV[1], ARGV[2]
local exists = redis.call('HEXISTS', K_CONFIG, 'created') == 1
if mode == 'create' and exists then
  return fail('LIMIT_EXISTS', name)
end
if mode == 'update' and not exists then
  return fail('LIMIT_NOT_FOUND', name)
end
local now_us = clock()
local set, drop = {'updated', str(now_us)}, {}
if not exists then
  set[#set + 1], set[#set + 2] = 'created', str(now_us)
end
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    drop[#drop + 1] = ARGV[i]
  else
    set[#set + 1], set[#set + 2] = ARGV[i], ARGV[i + 1]
  end
end
redis.call('HSET', K_CONFIG, unpack(set))
if #drop > 0 then
  redis.call('HDEL', K_CONFIG, unpack(drop))
end
return redis.call('HGETALL', K_CONFIG)
