-- Dedupe state is P..'dd:'..key with a value and an absolute expiry (PXAT).
-- ARGV[2] capacity, ARGV[3] max bytes, ARGV[4] number of admissions, then per admission:
--   identity key ('' for none), value, expires at;
--   n once, then (alert index, key, value, expires at) each;
--   n remember, then (key, value, expires at) each;
--   number of alerts; the job's eight values.
-- Answers per admission {0} duplicate, {1, id, dropped} queued, {2, 0, dropped} empty; or
-- false, with nothing changed, when the queue cannot take the admitted jobs (past its capacity,
-- or its jobs past max bytes).
local function dk(k) return P .. 'dd:' .. k end
-- Pass 1: decide, as if each key taken so far were set.
local plan = {}
local seen = {}
local function held(k)
  return seen[k] or redis.call('EXISTS', dk(k)) == 1
end
local pos = 5
local queued = 0
local bytes = 0
for a = 1, tonumber(ARGV[4]) do
  local p = {identity = ARGV[pos], iv = ARGV[pos + 1], ix = ARGV[pos + 2]}
  pos = pos + 3
  p.once = {}
  for _ = 1, tonumber(ARGV[pos]) do
    p.once[#p.once + 1] = {ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3], ARGV[pos + 4]}
    pos = pos + 4
  end
  pos = pos + 1
  p.remember = {}
  for _ = 1, tonumber(ARGV[pos]) do
    p.remember[#p.remember + 1] = {ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3]}
    pos = pos + 3
  end
  pos = pos + 1
  local alerts = tonumber(ARGV[pos])
  p.job = pos + 1
  pos = pos + 9
  if p.identity ~= '' and held(p.identity) then
    p.kind = 0
  else
    if p.identity ~= '' then seen[p.identity] = true end
    p.drop = {}
    for _, o in ipairs(p.once) do
      if held(o[2]) then p.drop[#p.drop + 1] = tonumber(o[1]) else seen[o[2]] = true end
    end
    if #p.drop >= alerts and alerts > 0 then
      p.kind = 2
    else
      p.kind = 1
      queued = queued + 1
      bytes = bytes + job_bytes(p.job)
    end
  end
  plan[a] = p
end
local live = tonumber(redis.call('GET', P .. 'live') or '0')
if live + queued > tonumber(ARGV[2]) then return false end
if over_bytes(bytes, ARGV[3]) then return false end
-- Pass 2: do it.
local out = {}
for a, p in ipairs(plan) do
  if p.kind == 0 then
    out[a] = {0, 0, 0}
  else
    if p.identity ~= '' then redis.call('SET', dk(p.identity), p.iv, 'NX', 'PXAT', p.ix) end
    for _, o in ipairs(p.once) do redis.call('SET', dk(o[2]), o[3], 'NX', 'PXAT', o[4]) end
    for _, r in ipairs(p.remember) do
      if not redis.call('SET', dk(r[1]), r[2], 'NX', 'PXAT', r[3]) then
        redis.call('PEXPIREAT', dk(r[1]), r[3], 'GT')
      end
    end
    if p.kind == 2 then
      out[a] = {2, 0, #p.drop}
    else
      local drop = nil
      if #p.drop > 0 then drop = '[' .. table.concat(p.drop, ',') .. ']' end
      out[a] = {1, add_job(p.job, drop), #p.drop}
    end
  end
end
return out
