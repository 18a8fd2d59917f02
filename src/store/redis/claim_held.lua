-- ARGV[2] target, ARGV[3] lease (ms). Every pending held job of one target, due or not.
local key = P .. 'heldq:' .. ARGV[2]
local lease = now_ms() + tonumber(ARGV[3])
local out = {}
for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do
  local h = redis.call('HMGET', jk(id), 'state', 'sid')
  if h[1] == 'pending' then
    release(h[2])
    redis.call('ZREM', P .. 'delayed', id)
    redis.call('ZREM', P .. 'pending:' .. ARGV[2], id)
    redis.call('HSET', jk(id), 'state', 'inflight', 'sid', '')
    redis.call('ZADD', P .. 'leased', lease, id)
    out[#out + 1] = job(id)
  end
end
redis.call('DEL', key)
return out
