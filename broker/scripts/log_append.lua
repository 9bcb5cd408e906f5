#!lua
-- log_append.lua: add lines to a run's log and keep the log within its byte budget.
-- KEYS[1] run         HASH   the run's record (it counts what its log holds and lost)
-- KEYS[2] logs        STREAM the run's log lines
-- ARGV[1] run_id
-- ARGV[2] max_bytes   the run's log budget; a line costs its message's bytes + overhead
-- ARGV[3] overhead    bytes a line costs beyond its message (Redis' cost per entry)
-- ARGV[4] lost        lines of the run lost before these, never stored (0: none): the
--                     writer's backlog overflowed while Redis was slow or away
-- ARGV[5] lost_bytes  what those lines would have cost, as costed above
-- ARGV[6] notice      the engine line written in their place, first (when lost > 0)
-- ARGV[7..] stream, message   pairs, oldest first (messages already split by the caller)
-- Includes: basics
-- Reply: {lines added (the notice included), lines dropped (as counted in ld)}
-- Errors: RUN_NOT_FOUND <id> (nothing is written: no log without its run)
-- While the log is over budget its oldest lines are dropped. The run record counts what
-- the log holds and what it lost, for readers to say so (a marker at the head of the log
-- itself would be the next line dropped):
--   lb    bytes the log holds (as costed above)
--   ld    lines dropped, ldb their bytes; ldid the id of the newest line dropped
--   lmax  the budget in force when lines were last dropped
-- A notice keeps its count in its entry (fields n, nb): while it is in the log, readers
-- see it where the lines went missing; when it is dropped in turn, ld and ldb take its
-- count instead of its own line, so the head marker counts every line the run lost.
-- Cost: linear in the lines added plus the lines dropped, never in the log's length.
-- Commands (the engine's ACL user needs each): EXISTS HGET PTTL XADD XRANGE XDEL HINCRBY
-- HSET PEXPIRE.
-- Full memory: nothing is written before the checks, and the first write is an XADD,
-- which Redis refuses (whole script unwritten) when memory is full. The log expires with
-- its record (a line written after the run ended gets the record's remaining time).

local run_id = ARGV[1]
local max_bytes, overhead = tonumber(ARGV[2]), tonumber(ARGV[3])
local lost, lost_bytes, notice = tonumber(ARGV[4]), ARGV[5], ARGV[6]
if lost == 0 and #ARGV < 8 then
  return {0, 0}
end
local run_key, log_key = K_RUN, K_LOGS

if redis.call('EXISTS', run_key) == 0 then
  return fail('RUN_NOT_FOUND', run_id)
end
local kept = 0
if redis.call('EXISTS', log_key) == 1 then  -- a log that vanished starts from nothing
  kept = tonumber(redis.call('HGET', run_key, 'lb') or '0')
end
local ttl = redis.call('PTTL', run_key)

local added = 0
if lost > 0 then
  redis.call('XADD', log_key, '*', 's', 'engine', 'm', notice, 'n', str(lost), 'nb', lost_bytes)
  kept = kept + #notice + overhead
  added = 1
end
for i = 7, #ARGV - 1, 2 do
  redis.call('XADD', log_key, '*', 's', ARGV[i], 'm', ARGV[i + 1])
  kept = kept + #ARGV[i + 1] + overhead
  added = added + 1
end

-- Drop the oldest lines, a page at a time, until the log fits. A log at its budget drops
-- about as many lines as it gains: the first page is that many (a page of long lines
-- is costly to read), the next ones double up to 128.
local dropped, dropped_bytes, last = 0, 0, nil
local page_size = math.min(added, 128)
while kept > max_bytes do
  local page = redis.call('XRANGE', log_key, last and ('(' .. last) or '-', '+', 'COUNT', page_size)
  page_size = math.min(page_size * 2, 128)
  if #page == 0 then
    kept = 0  -- the counter was ahead of the log (it lost entries some other way)
    break
  end
  local ids = {}
  for i = 1, #page do
    if kept <= max_bytes then
      break
    end
    local entry = page[i]
    local fields, size, count, count_bytes = entry[2], overhead, 1, nil
    if #fields == 4 and fields[3] == 'm' then  -- a line as this script writes it
      size = size + #fields[4]
    else  -- a notice (s, engine, m, text, n, lost, nb, their bytes), or another shape
      for j = 1, #fields - 1, 2 do
        if fields[j] == 'm' then
          size = size + #fields[j + 1]
        elseif fields[j] == 'n' then
          count = tonumber(fields[j + 1]) or 1
        elseif fields[j] == 'nb' then
          count_bytes = tonumber(fields[j + 1])
        end
      end
    end
    kept = kept - size
    last = entry[1]
    dropped, dropped_bytes = dropped + count, dropped_bytes + (count_bytes or size)
    ids[i] = last
  end
  -- XDEL, not XTRIM MINID (twice as fast here), which the engine's ACL user would need
  -- on top (deploy/redis-acl.conf); deleting from the head frees whole stream nodes.
  redis.call('XDEL', log_key, unpack(ids))
end

if kept < 0 then
  kept = 0
end
if dropped > 0 then
  redis.call('HINCRBY', run_key, 'ld', str(dropped))
  redis.call('HINCRBY', run_key, 'ldb', str(dropped_bytes))
  redis.call('HSET', run_key, 'lb', str(kept), 'ldid', last, 'lmax', str(max_bytes))
elseif added > 0 then
  redis.call('HSET', run_key, 'lb', str(kept))
end
if ttl > 0 and added > 0 then
  redis.call('PEXPIRE', log_key, ttl)
end
return {added, dropped}
