-- An incident's compare-and-set, then complete.lua in the same script: ARGV[2] n,
-- ARGV[3 .. 2+n] job ids to settle, then the jobs to add (a count, eight values each), then
-- the incident: id, expected version, JSON, open key, resolved (0/1). When the stored
-- incident is not at the expected version nothing at all changes and 0 is returned.
do
  local b = 3 + tonumber(ARGV[2])
  b = b + 1 + tonumber(ARGV[b]) * 8
  local id = ARGV[b]
  local cur = redis.call('HGET', P .. 'oc:incidents', id)
  if not cur then return 0 end
  local ok, rec = pcall(cjson.decode, cur)
  if not ok or tostring(rec['version'] or 0) ~= ARGV[b + 1] then return 0 end
  redis.call('HSET', P .. 'oc:incidents', id, ARGV[b + 2])
  if ARGV[b + 4] == '1' and redis.call('HGET', P .. 'oc:incident_open', ARGV[b + 3]) == id then
    redis.call('HDEL', P .. 'oc:incident_open', ARGV[b + 3])
  end
end
