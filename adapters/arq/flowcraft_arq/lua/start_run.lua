-- start_run: create the run once (idempotent on the run id) and fire its start nodes.
-- A: {meta = {k, v, ...}, ctx = {k, json, ...}, start = {node index, ...}, ev = {event, ...},
--     now = ms, bp = blueprint id, gs = the start nodes' graph records, q = see enqueue()}
-- returns {created 0/1, status, job, ...} (see handed_over()); for an existing run its
-- undelivered outbox jobs
if redis.call('EXISTS', K_META) == 1 then
  local flat = redis.call('HGETALL', K_META)
  local status = ''
  for i = 1, #flat, 2 do
    if flat[i] == 'status' then
      status = flat[i + 1]
    end
  end
  local out = {0, status}
  local jobs = outbox_of(flat)
  for i = 1, #jobs do
    out[#out + 1] = jobs[i]
  end
  return out
end
for i = 1, #A.meta, 2 do
  put(A.meta[i], A.meta[i + 1])
end
put('live', fmt(#A.start))
put('iter', '0')
if #A.ctx > 0 then
  call_sliced('HSET', K_CTX, A.ctx)
end
redis.call('SET', K_BP, A.bp)
events(A.ev)
local fired = {}
for i = 1, #A.start do
  PRE['i:' .. ikey(A.start[i], 0)] = false  -- a new run: nothing fired yet
  fire(A.start[i], 0, 'null', fired, 0, A.now)
end
if #fired == 0 then
  finish('completed', '', A.bp)
  flush()
  return {1, 'completed'}
end
flush()
return handed_over(fired, {1, 'running'}, A.now)
