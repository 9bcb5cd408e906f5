-- event.lua: tell watchers (the UI, `--watch`) something changed.
-- Needs KEYS: events
-- Includes: none

-- "run ID TYPE", "deleted ID", "queue". A plain PUBLISH: nobody listening costs nothing.
local function event(message)
  redis.call('PUBLISH', K_EVENTS, message)
end
