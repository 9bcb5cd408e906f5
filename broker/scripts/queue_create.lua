#!lua
-- queue_create.lua: create a work queue, or make sure it exists.
-- KEYS: the queue keys listed in _common.lua
-- ARGV[1] mode         "create" (an existing queue is an error) | "ensure"
-- ARGV[2] id           uuid for a new queue
-- ARGV[3] description
-- ARGV[4] limit        concurrency limit, "" for none
-- ARGV[5] name         the queue's name
-- Reply: {created (0|1), config HASH as a flat array}
-- Errors: QUEUE_EXISTS <name>

local mode, id, description, limit, name = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if mode == 'create' and redis.call('EXISTS', K_CONFIG) == 1 then
  return fail('QUEUE_EXISTS', name)
end
local now_us = clock()
local created = ensure_queue(name, id, description, limit, now_us)
if created == 1 then
  event('queue')
end
return {created, redis.call('HGETALL', K_CONFIG)}
