-- ARGV[2] id, [3] attempt, [4] progress, [5] error, [6] reason, [7] not_before (ms).
local id = ARGV[2]
local h = redis.call('HMGET', jk(id), 'state', 'sid', 'target')
if not h[1] or h[1] == 'dead' then return 0 end
release(h[2])
redis.call('ZREM', P .. 'leased', id)
redis.call('HSET', jk(id), 'state', 'pending', 'attempt', ARGV[3], 'progress', ARGV[4],
  'last_error', ARGV[5], 'reason', ARGV[6], 'not_before', ARGV[7], 'sid', '')
redis.call('ZADD', P .. 'delayed', ARGV[7], id)
repend(id, h[3])
return 1
