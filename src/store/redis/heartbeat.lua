-- ARGV[2] consumer, ARGV[3..] stream entries it is delivering: renewed, so that no other
-- replica takes them over. Also forgets consumers idle for an hour with nothing pending.
for i = 3, #ARGV do
  local p = redis.pcall('XPENDING', S, G, ARGV[i], ARGV[i], 1, ARGV[2])
  if type(p) == 'table' and not p.err and #p > 0 then
    redis.call('XCLAIM', S, G, ARGV[2], 0, ARGV[i], 'JUSTID')
  end
end
local cs = redis.pcall('XINFO', 'CONSUMERS', S, G)
if type(cs) == 'table' and not cs.err then
  for _, c in ipairs(cs) do
    local m = {}
    for j = 1, #c, 2 do m[c[j]] = c[j + 1] end
    if m['name'] ~= ARGV[2] and m['pending'] == 0 and tonumber(m['idle']) > 3600000 then
      redis.call('XGROUP', 'DELCONSUMER', S, G, m['name'])
    end
  end
end
return 1
