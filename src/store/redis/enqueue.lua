-- ARGV[2] capacity, ARGV[3..] jobs. All or none; false when the queue is full.
local live = tonumber(redis.call('GET', P .. 'live') or '0')
if live + tonumber(ARGV[3]) > tonumber(ARGV[2]) then return false end
return add_jobs(3)
