-- The hourly counters of store/stats.rs: one hash per hour, P..'stats:'..hour (unix ms of its
-- start), fields 's:'..severity and 'n:'..alertname, and 'names', how many distinct alert
-- names it holds (at most ARGV[4]; the rest count under ARGV[5]). It expires on its own.
-- ARGV[2] hour, [3] expires at (unix ms), [4] cap, [5] the field for names past the cap,
-- [6] severity, [7..] alert names.
local P = ARGV[1]
local k = P .. 'stats:' .. ARGV[2]
local cap = tonumber(ARGV[4])
redis.call('HINCRBY', k, 's:' .. ARGV[6], 1)
local names = tonumber(redis.call('HGET', k, 'names') or '0')
for i = 7, #ARGV do
  local f = 'n:' .. ARGV[i]
  if redis.call('HEXISTS', k, f) == 0 then
    if names >= cap then
      f = 'n:' .. ARGV[5]
    else
      names = names + 1
      redis.call('HSET', k, 'names', names)
    end
  end
  redis.call('HINCRBY', k, f, 1)
end
redis.call('PEXPIREAT', k, ARGV[3])
return 1
