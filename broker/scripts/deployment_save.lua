#!lua
-- deployment_save.lua: create or update a deployment record and its name index.
-- KEYS[1] names    HASH deployment name -> id
-- KEYS[2] record   STRING the deployment as JSON (key = prefix .. id)
-- ARGV[1] mode     "create" | "update"
-- ARGV[2] id
-- ARGV[3] name
-- ARGV[4] json     the whole record
-- ARGV[5] old name "update" only: the name the record had
-- Reply: 1
-- Errors: DEPLOYMENT_EXISTS <name> (taken by another deployment), DEPLOYMENT_NOT_FOUND <id>
-- Both keys share the {deployments} hash tag, so this stays one slot in a cluster.

local mode, id, name, json, old_name = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local owner = redis.call('HGET', KEYS[1], name)
if owner and owner ~= id then
  return redis.error_reply('RUNQ DEPLOYMENT_EXISTS ' .. name)
end
if mode == 'update' then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    return redis.error_reply('RUNQ DEPLOYMENT_NOT_FOUND ' .. id)
  end
elseif owner then
  return redis.error_reply('RUNQ DEPLOYMENT_EXISTS ' .. name)
end
-- Writes that may grow come first, so full memory refuses the script before any write.
redis.call('SET', KEYS[2], json)
redis.call('HSET', KEYS[1], name, id)
if mode == 'update' and old_name ~= name and redis.call('HGET', KEYS[1], old_name) == id then
  redis.call('HDEL', KEYS[1], old_name)
end
return 1
