-- Shared by every script. ARGV[1] is the key prefix; keys are derived from it (one Redis,
-- not a cluster). A job is the hash P..'job:'..id; 'state' is pending | inflight | dead.
-- A pending job is on the stream (due now) or in P..'delayed' (a retry, scored by when),
-- and in P..'pending:'..target (for coalescing). An inflight job is in the stream group's
-- pending list under the consumer that claimed it, or (taken for coalescing or merging) in
-- P..'leased' with a lease. Held jobs (resolved alerts waiting to be merged) are also in
-- P..'heldq:'..target while pending. Dead jobs are in P..'dead'. P..'depth' counts live jobs per target,
-- P..'live' in all. P..'bytes' is what the jobs hold, dead letters included (each job's share
-- in its 'bytes' field): storage.max_bytes bounds it.
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
-- Bytes a job takes in the count P..'bytes': its eight values at ARGV[b..b+7], and a fixed
-- share for the field names, its stream entry and its places in the indexes.
local JOB_OVERHEAD = 256
local function job_bytes(b)
  local n = JOB_OVERHEAD
  for i = b, b + 7 do n = n + #ARGV[i] end
  return n
end
-- Whether `bytes` more (the jobs about to be added) would take the jobs past `max` bytes.
local function over_bytes(bytes, max)
  return bytes > 0 and tonumber(redis.call('GET', P .. 'bytes') or '0') + bytes > tonumber(max)
end
-- Forgets a job's hash and its bytes.
local function drop_job(id)
  local bytes = tonumber(redis.call('HGET', jk(id), 'bytes') or '0')
  if bytes > 0 and redis.call('DECRBY', P .. 'bytes', bytes) < 0 then
    redis.call('SET', P .. 'bytes', 0)
  end
  redis.call('DEL', jk(id))
end
-- Adds the jobs described from ARGV[from]: a count, then eight values per job. A job due
-- later than its acceptance (held for merging) or later than now (an on-call timer, a
-- delayed page) waits in the delayed set.
local function add_job(b, drop)
  local id = redis.call('INCR', P .. 'seq')
  local target = ARGV[b + 1] .. ':' .. ARGV[b]
  local bytes = job_bytes(b)
  redis.call('HSET', jk(id), 'receiver', ARGV[b], 'integration', ARGV[b + 1],
    'kind', ARGV[b + 2], 'notification', ARGV[b + 3], 'attempt', '0', 'progress', '[]',
    'accepted_at', ARGV[b + 4], 'not_before', ARGV[b + 6], 'fallback', ARGV[b + 5],
    'held', ARGV[b + 7], 'state', 'pending', 'target', target, 'bytes', bytes)
  redis.call('INCRBY', P .. 'bytes', bytes)
  if drop then redis.call('HSET', jk(id), 'drop', drop) end
  if tonumber(ARGV[b + 6]) > tonumber(ARGV[b + 4]) or tonumber(ARGV[b + 6]) > now_ms() then
    redis.call('ZADD', P .. 'delayed', ARGV[b + 6], id)
  else
    push(id)
  end
  redis.call('ZADD', P .. 'pending:' .. target, id, id)
  if ARGV[b + 7] == '1' then redis.call('ZADD', P .. 'heldq:' .. target, id, id) end
  count(target, 1)
  return id
end
local function add_jobs(from)
  local n = tonumber(ARGV[from])
  local ids = {}
  for i = 0, n - 1 do
    ids[#ids + 1] = add_job(from + 1 + i * 8, nil)
  end
  return ids
end
-- Back to pending (not on the stream): indexed for coalescing, and for merging if held.
local function repend(id, target)
  redis.call('ZADD', P .. 'pending:' .. target, id, id)
  if redis.call('HGET', jk(id), 'held') == '1' then
    redis.call('ZADD', P .. 'heldq:' .. target, id, id)
  end
end
-- Out of pending: in flight, done or dead.
local function unpend(id, target)
  redis.call('ZREM', P .. 'pending:' .. target, id)
  redis.call('ZREM', P .. 'heldq:' .. target, id)
end
local function job(id)
  return {id, redis.call('HGETALL', jk(id))}
end
