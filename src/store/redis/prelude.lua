-- Shared by every script. ARGV[1] is the key prefix; keys are derived from it (one Redis,
-- not a cluster). A job is the hash P..'job:'..id; 'state' is pending | inflight | dead.
-- A pending job is on the stream (due now) or in P..'delayed' (a retry, scored by when),
-- and in P..'pending:'..target (for coalescing). An inflight job is in the stream group's
-- pending list under the consumer that claimed it, or (taken for coalescing) in P..'held'
-- with a lease. Dead jobs are in P..'dead'. P..'depth' counts live jobs per target,
-- P..'live' in all.
local P = ARGV[1]
local S = P .. 'stream'
local G = 'workers'
local function jk(id) return P .. 'job:' .. id end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Forgets a job's stream entry, read or not.
local function release(sid)
  if sid and sid ~= '' then
    redis.call('XACK', S, G, sid)
    redis.call('XDEL', S, sid)
  end
end
-- Puts a job on the stream, due now.
local function push(id)
  local sid = redis.call('XADD', S, '*', 'job', id)
  redis.call('HSET', jk(id), 'sid', sid)
end
local function count(target, by)
  if redis.call('HINCRBY', P .. 'depth', target, by) <= 0 then
    redis.call('HDEL', P .. 'depth', target)
  end
  if redis.call('INCRBY', P .. 'live', by) < 0 then redis.call('SET', P .. 'live', 0) end
end
-- Adds the jobs described from ARGV[from]: a count, then six values per job.
local function add_jobs(from)
  local n = tonumber(ARGV[from])
  local ids = {}
  for i = 0, n - 1 do
    local b = from + 1 + i * 6
    local id = redis.call('INCR', P .. 'seq')
    local target = ARGV[b + 1] .. ':' .. ARGV[b]
    redis.call('HSET', jk(id), 'receiver', ARGV[b], 'integration', ARGV[b + 1],
      'kind', ARGV[b + 2], 'notification', ARGV[b + 3], 'attempt', '0', 'progress', '[]',
      'accepted_at', ARGV[b + 4], 'not_before', ARGV[b + 4], 'fallback', ARGV[b + 5],
      'state', 'pending', 'target', target)
    push(id)
    redis.call('ZADD', P .. 'pending:' .. target, id, id)
    count(target, 1)
    ids[#ids + 1] = id
  end
  return ids
end
local function job(id)
  return {id, redis.call('HGETALL', jk(id))}
end
