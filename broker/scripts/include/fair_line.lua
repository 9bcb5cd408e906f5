-- fair_line.lua: a run of a queue with fair sharing joins the line of its tag's value.
-- Needs KEYS: config
-- Includes: indexes
--
-- A queue whose config has `fair_by` (a tag key, `work-queue update --fair-by KEY`) keeps,
-- beside `scheduled`, one line per value of the tags KEY:VALUE (index `fair:VALUE`, run id
-- -> due ms; untagged runs in the value "") and the values by their last turn (index
-- `fair-turns:`, value -> turn number). The claim serves the lines round-robin
-- (include/fair_pick.lua). A line entry whose run left `scheduled` another way
-- (cancelled, deleted) is skipped when it comes up.

-- The tag value `tags_json` (a run's tags as stored) holds under `fair_by`, else "".
local function fair_value(tags_json, fair_by)
  if not tags_json or tags_json == '' then
    return ''
  end
  local prefix = fair_by .. ':'
  for _, tag in ipairs(cjson.decode(tags_json)) do
    if string.sub(tag, 1, #prefix) == prefix then
      return string.sub(tag, #prefix + 1)
    end
  end
  return ''
end

-- Put a run due at `due` into its value's line, if the queue shares fairly. A new value
-- gets turn 0: it is served before the values served already.
local function fair_add(run_id, due, tags_json, fair_by)
  fair_by = fair_by or redis.call('HGET', K_CONFIG, 'fair_by')
  if not fair_by then
    return
  end
  local value = fair_value(tags_json, fair_by)
  redis.call('ZADD', index_key('fair', value), due, run_id)
  redis.call('ZADD', index_key('fair-turns', ''), 'NX', 0, value)
end
