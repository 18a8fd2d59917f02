-- ARGV[2] capacity, ARGV[3] max bytes, ARGV[4..] jobs. All or none; false when the queue is
-- full (past its capacity, or its jobs past max bytes).
local live = tonumber(redis.call('GET', P .. 'live') or '0')
local n = tonumber(ARGV[4])
if live + n > tonumber(ARGV[2]) then return false end
local bytes = 0
for i = 0, n - 1 do bytes = bytes + job_bytes(5 + i * 8) end
if over_bytes(bytes, ARGV[3]) then return false end
return add_jobs(4)
