-- claim: take a lease (fencing token) on a fired instance; refuse when the run is not running,
-- the instance is not fired, already finished, or leased by another live worker.
-- A: {n, it, item, tok, lease = ms, now = ms}
-- returns {1, '', status, input JSON, gathered 0/1} or {0, reason, status, outbox job, ...}
-- A token "<hex>~..." names the queue job's delivery: a job delivered again re-drives what its
-- earlier delivery claimed and left behind (see orphans_of).
local field = 'i:' .. ikey(A.n, A.it, A.item)
local m = redis.call('HMGET', K_META, 'status', field)
local status = m[1]
if not status then
  return {0, 'unknown', ''}
end
if status ~= 'running' then
  return {0, 'not_running', status}
end
if not m[2] then
  return {0, 'not_fired', status}
end
if m[2] == 'B' then
  -- e.g. the batch's job delivered again after its worker died before queueing the items
  return with_outbox({0, 'scattered', status})
end
if m[2] == 'S' then
  return {0, 'parked', status}
end
local r = parse(m[2])
if not r then
  local flat = redis.call('HGETALL', K_META)
  local jobs = outbox_of(flat)
  local mine = string.match(A.tok, '^(%x+~)')
  if mine then
    local orphans, waiting = orphans_of(flat, mine, A.now)
    flush()
    if waiting then
      return {0, 'leased', status}
    end
    for i = 1, #orphans do
      jobs[#jobs + 1] = orphans[i]
    end
  end
  local out = {0, 'done', status}
  for i = 1, #jobs do
    out[#out + 1] = jobs[i]
  end
  return out
end
if r.tok ~= '' and r.exp > A.now and r.tok ~= A.tok then
  return {0, 'leased', status}
end
r.tok = A.tok
r.exp = A.now + A.lease
redis.call('HSET', K_META, field, record(r))
local gathered = 0
if r.kind == 'G' then
  gathered = 1
end
return {1, '', status, r.input, gathered}
