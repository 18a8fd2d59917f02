local ids = redis.call('ZRANGE', P .. 'dead', 0, -1)
for _, id in ipairs(ids) do drop_job(id) end
redis.call('DEL', P .. 'dead')
return #ids
