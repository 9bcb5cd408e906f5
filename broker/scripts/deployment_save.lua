#!lua
-- deployment_save.lua: create or update a deployment record and its name index.
-- KEYS[1] names    HASH   deployment name -> id
-- KEYS[2] record   STRING the deployment as JSON
-- ARGV[1] mode            "create" | "update"
-- ARGV[2] deployment_id
-- ARGV[3] name
-- ARGV[4] document        the whole record (JSON)
-- ARGV[5] old_name        "update" only: the name the record had
-- Includes: basics
-- Reply: 1
-- Errors: DEPLOYMENT_EXISTS <name> (taken by another deployment), DEPLOYMENT_NOT_FOUND <id>
-- Both keys share the {deployments} hash tag, so this stays one slot in a cluster.

local mode, id, name, document, old_name = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local owner = redis.call('HGET', K_NAMES, name)
if owner and owner ~= id then
  return fail('DEPLOYMENT_EXISTS', name)
end
if mode == 'update' then
  if redis.call('EXISTS', K_RECORD) == 0 then
    return fail('DEPLOYMENT_NOT_FOUND', id)
  end
elseif owner then
  return fail('DEPLOYMENT_EXISTS', name)
end
-- Writes that may grow come first, so full memory refuses the script before any write.
redis.call('SET', K_RECORD, document)
redis.call('HSET', K_NAMES, name, id)
if mode == 'update' and old_name ~= name and redis.call('HGET', K_NAMES, old_name) == id then
  redis.call('HDEL', K_NAMES, old_name)
end
return 1
