-- ARGV[2] reference, [3] group (receiver "\n" group key), [4] the record as read ('' when
-- creating), [5] the new record, [6] expires at (unix ms), [7] firing '1' | '0',
-- [8] created at (unix ms). Compare-and-set: 1 written, 0 the reference is taken by another
-- group, -1 someone changed the record (or gave the group a reference) since it was read.
local rk = P .. 'co:ref:' .. ARGV[2]
local gk = P .. 'co:group:' .. ARGV[3]
local cur = redis.call('GET', rk)
if ARGV[4] == '' then
  if cur then return 0 end
  local g = redis.call('GET', gk)
  if g and redis.call('EXISTS', P .. 'co:ref:' .. g) == 1 then return -1 end
elseif cur ~= ARGV[4] then
  return -1
end
redis.call('SET', rk, ARGV[5], 'PXAT', ARGV[6])
redis.call('SET', gk, ARGV[2], 'PXAT', ARGV[6])
if ARGV[7] == '1' then
  redis.call('ZADD', P .. 'co:firing', ARGV[8], ARGV[2])
else
  redis.call('ZREM', P .. 'co:firing', ARGV[2])
end
return 1
