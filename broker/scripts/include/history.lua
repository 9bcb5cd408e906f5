-- history.lua: a run's bounded state history, and text cut to a byte budget.
-- Needs KEYS: none
-- Includes: basics
--
-- Each run keeps its last HISTORY_MAX transitions in a capped LIST beside its record (its
-- `history` key), each entry JSON [type, name, timestamp us, message], the message cut to
-- MESSAGE_MAX bytes. Creation is not stored there (the reader adds it from the record's
-- `created` while the list is not full), and a claim's PENDING entry is stored by the
-- transition that leaves PENDING (transition.lua: one RPUSH for both, none in the claim;
-- the reader adds it from the record's state meanwhile, broker/records.py). State names
-- are cut to NAME_MAX bytes (broker/claims.py refuses names over 64 characters first,
-- which take at most 256 bytes).
local HISTORY_MAX, MESSAGE_MAX, NAME_MAX = 50, 1000, 256

-- At most `limit` bytes (MESSAGE_MAX by default), cut on a UTF-8 character boundary.
local function capped(message, limit)
  limit = limit or MESSAGE_MAX
  if message == nil or #message <= limit then
    return message
  end
  local cut = limit
  while cut > 0 do
    local byte = string.byte(message, cut + 1)
    if byte < 128 or byte >= 192 then
      break
    end
    cut = cut - 1
  end
  return string.sub(message, 1, cut)
end

-- One transition as its history entry: JSON [type, name, timestamp us, message].
local function history_entry(state_type, state_name, message, at_us)
  return cjson.encode({state_type, state_name, str(at_us), capped(message or '')})
end

-- Append `...` (entries, oldest first) to a run's history, keeping its last HISTORY_MAX.
local function record_history(history_key, ...)
  if redis.call('RPUSH', history_key, ...) > HISTORY_MAX then
    redis.call('LTRIM', history_key, -HISTORY_MAX, -1)
  end
end
