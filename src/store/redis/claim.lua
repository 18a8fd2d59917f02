-- ARGV[2] consumer, ARGV[3] now (ms), ARGV[4] limit, ARGV[5] visibility timeout (ms).
redis.pcall('XGROUP', 'CREATE', S, G, '0', 'MKSTREAM')
-- Retries now due go back on the stream.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', ARGV[3], 'LIMIT', 0, 1000)) do
  redis.call('ZREM', P .. 'delayed', id)
  if redis.call('HGET', jk(id), 'state') == 'pending' then push(id) end
end
-- Jobs taken for coalescing by a replica that stopped before finishing.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leased', '-inf', now_ms(), 'LIMIT', 0, 1000)) do
  redis.call('ZREM', P .. 'leased', id)
  local h = redis.call('HMGET', jk(id), 'state', 'target')
  if h[1] == 'inflight' then
    redis.call('HSET', jk(id), 'state', 'pending')
    repend(id, h[2])
    push(id)
  end
end
local limit = tonumber(ARGV[4])
local out = {}
local function take(entry, reclaimed)
  if not entry then return end
  local sid, f = entry[1], entry[2]
  local id = f and f[2]
  if id then
    local h = redis.call('HMGET', jk(id), 'state', 'sid', 'target')
    if h[2] == sid and (h[1] == 'pending' or (reclaimed and h[1] == 'inflight')) then
      redis.call('HSET', jk(id), 'state', 'inflight')
      unpend(id, h[3])
      out[#out + 1] = job(id)
      return
    end
  end
  -- An entry whose job is gone or was taken another way.
  release(sid)
end
-- In flight with a consumer that has not renewed it within the visibility timeout.
local r = redis.call('XAUTOCLAIM', S, G, ARGV[2], ARGV[5], '0-0', 'COUNT', limit)
for _, e in ipairs(r[2]) do take(e, true) end
if #out < limit then
  local rr = redis.call('XREADGROUP', 'GROUP', G, ARGV[2], 'COUNT', limit - #out, 'STREAMS', S, '>')
  if rr then
    for _, e in ipairs(rr[1][2]) do take(e, false) end
  end
end
return out
