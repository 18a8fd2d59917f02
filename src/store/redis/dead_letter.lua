-- ARGV[2] id, [3] attempt, [4] progress, [5] error, [6] reason, [7] failed_at (ms),
-- [8..] fallback jobs to add.
local id = ARGV[2]
local h = redis.call('HMGET', jk(id), 'state', 'sid', 'target')
if h[1] and h[1] ~= 'dead' then
  release(h[2])
  redis.call('ZREM', P .. 'delayed', id)
  redis.call('ZREM', P .. 'leased', id)
  unpend(id, h[3])
  count(h[3], -1)
  redis.call('HSET', jk(id), 'state', 'dead', 'attempt', ARGV[3], 'progress', ARGV[4],
    'last_error', ARGV[5], 'reason', ARGV[6], 'failed_at', ARGV[7], 'sid', '')
  redis.call('ZADD', P .. 'dead', id, id)
end
add_jobs(8)
return 1
