-- ARGV[2] bucket name, [3] rate per second, [4] burst. Reserves one token on Redis's clock,
-- shared by every replica, and answers how long (µs) the caller waits before sending: the
-- reservations are spaced 1/rate apart once the burst is used.
local k = P .. 'bucket:' .. ARGV[2]
local rate, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', k, 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate) - 1
redis.call('HSET', k, 'tokens', string.format('%.9f', tokens), 'at', string.format('%.6f', now))
local wait = 0
if tokens < 0 then wait = -tokens / rate end
redis.call('PEXPIRE', k, math.ceil((wait + burst / rate) * 1000) + 1000)
return math.ceil(wait * 1000000)
