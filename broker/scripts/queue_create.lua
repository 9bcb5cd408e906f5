#!lua
-- queue_create.lua: create a work queue, or make sure it exists.
-- KEYS[1] config       HASH   the queue's settings and counters
-- KEYS[2] ready        STREAM released runs (created with its group "agents")
-- KEYS[3] events       channel "queue" when the queue is created (watchers)
-- ARGV[1] mode         "create" (an existing queue is an error) | "ensure"
-- ARGV[2] queue_id     uuid for a new queue
-- ARGV[3] description
-- ARGV[4] limit        concurrency limit, "" for none
-- ARGV[5] name         the queue's name
-- Includes: basics, ensure_queue, event
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
