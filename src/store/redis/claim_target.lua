-- ARGV[2] target, ARGV[3] lease (ms), ARGV[4] most jobs to take. The oldest pending jobs of
-- one target, due or not.
local key = P .. 'pending:' .. ARGV[2]
local lease = now_ms() + tonumber(ARGV[3])
local out = {}
for _, id in ipairs(redis.call('ZRANGE', key, 0, tonumber(ARGV[4]) - 1)) do
  redis.call('ZREM', key, id)
  local h = redis.call('HMGET', jk(id), 'state', 'sid')
  redis.call('ZREM', P .. 'heldq:' .. ARGV[2], id)
  if h[1] == 'pending' then
    release(h[2])
    redis.call('ZREM', P .. 'delayed', id)
    redis.call('HSET', jk(id), 'state', 'inflight', 'sid', '')
    redis.call('ZADD', P .. 'leased', lease, id)
    out[#out + 1] = job(id)
  end
end
return out
