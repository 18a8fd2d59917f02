-- ARGV[2] by, [3] limit (negative: none), [4] expires at (unix ms; set when a counter is
-- created), [5..] names. Adds `by` to each counter unless that would take it over the
-- limit; returns 1 (added) or 0 per name, in order.
local by = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local out = {}
for i = 5, #ARGV do
  local k = P .. 'counter:' .. ARGV[i]
  local v = tonumber(redis.call('GET', k) or '0')
  if limit >= 0 and v + by > limit then
    out[#out + 1] = 0
  else
    redis.call('INCRBY', k, by)
    if redis.call('PTTL', k) == -1 then redis.call('PEXPIREAT', k, ARGV[4]) end
    out[#out + 1] = 1
  end
end
return out
