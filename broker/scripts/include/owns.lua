-- owns.lua: the fencing-token check of every write by a run's owner.
-- Needs KEYS: none
-- Includes: none

-- A claim's fencing token is never stored: the record holds its SHA-1 (the claim id),
-- so reading a record does not reveal the token that writes to it need.
local function owns(stored, token)
  return token ~= '' and stored ~= nil and stored == redis.sha1hex(token)
end
