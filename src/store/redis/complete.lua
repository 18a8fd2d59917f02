-- ARGV[2] n, ARGV[3 .. 2+n] job ids, then jobs to add.
local n = tonumber(ARGV[2])
for i = 3, 2 + n do
  local id = ARGV[i]
  local h = redis.call('HMGET', jk(id), 'state', 'sid', 'target')
  if h[1] then
    release(h[2])
    redis.call('ZREM', P .. 'delayed', id)
    redis.call('ZREM', P .. 'leased', id)
    if h[1] == 'dead' then
      redis.call('ZREM', P .. 'dead', id)
    else
      unpend(id, h[3])
      count(h[3], -1)
    end
    drop_job(id)
  end
end
add_jobs(3 + n)
return 1
