-- ARGV[2..] (key, value, expires at) triples: each taken if absent, else its expiry extended.
for i = 2, #ARGV, 3 do
  local k = P .. 'dd:' .. ARGV[i]
  if not redis.call('SET', k, ARGV[i + 1], 'NX', 'PXAT', ARGV[i + 2]) then
    redis.call('PEXPIREAT', k, ARGV[i + 2], 'GT')
  end
end
return 1
