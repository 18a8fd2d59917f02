local out = {}
for _, id in ipairs(redis.call('ZRANGE', P .. 'dead', 0, -1)) do out[#out + 1] = job(id) end
return out
