-- ARGV[2] name, [3] by, [4] expires at (unix ms; set when the counter is created).
local k = P .. 'counter:' .. ARGV[2]
local v = redis.call('INCRBY', k, ARGV[3])
if redis.call('PTTL', k) == -1 then redis.call('PEXPIREAT', k, ARGV[4]) end
return v
