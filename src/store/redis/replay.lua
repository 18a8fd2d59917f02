-- ARGV[2] id ('' for all), ARGV[3] now (ms).
local ids
if ARGV[2] == '' then
  ids = redis.call('ZRANGE', P .. 'dead', 0, -1)
elseif redis.call('ZSCORE', P .. 'dead', ARGV[2]) then
  ids = {ARGV[2]}
else
  ids = {}
end
local n = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', P .. 'dead', id)
  local target = redis.call('HGET', jk(id), 'target')
  if target then
    redis.call('HSET', jk(id), 'state', 'pending', 'attempt', '0', 'starts', '0', 'not_before', ARGV[3],
      'accepted_at', ARGV[3])
    redis.call('HDEL', jk(id), 'failed_at')
    repend(id, target)
    count(target, 1)
    push(id)
    n = n + 1
  end
end
return n
