-- fail: a node failed for good. The run CASes running -> failed (final), the failed node's
-- successors get poison (`all` joins) / cancel (`any` joins) pills, nothing new starts (fired
-- instances nobody is running are dropped, the outbox is cleared), and the run finishes once
-- the nodes still running have finished.
-- A: {n, it, item, tok, err = WorkflowError JSON, w, pills = {target, kind, ...}, ev, ts, bp,
--     now}; a failed batch item fails its batch instance
-- returns {ok, reason, status, finished}
local field, status, _, live = held()
if not field then
  return status  -- the refusal
end
put(field, 'X')
for i = 1, #A.pills, 2 do
  put('x:' .. ikey(A.pills[i], A.it), A.pills[i + 1])
end
apply_writes(A.w)
events(A.ev)
redis.call('RPUSH', K_ERRORS, A.err)
live = live - 1
if A.item >= 0 and getf('i:' .. ikey(A.n, A.it)) == 'B' then
  put('i:' .. ikey(A.n, A.it), 'X')
  live = live - 1
end
if status == 'running' then
  status = 'failed'
  put('status', 'failed')
  live = live - drop_unleased(A.now)
end
put('live', fmt(live))
local finished = maybe_finish(live, status, A.ts, A.bp)
flush()
return {1, '', status, finished}
