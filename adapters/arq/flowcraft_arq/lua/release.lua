-- release: give up a claimed instance without completing it. While the run is running the
-- instance stays fired (another delivery runs it); once the run is failed or cancelled it is
-- dropped, which may finish the run.
-- A: {n, it, item, tok, ts}
-- returns {ok, reason, status, finished}
local field, status, r, live = held()
if not field then
  return status  -- the refusal
end
if status == 'running' then
  r.tok = ''
  r.exp = 0
  redis.call('HSET', K_META, field, record(r))
  return {1, '', status, 0}
end
put(field, 'C')
live = live - 1
put('live', fmt(live))
local finished = maybe_finish(live, status, A.ts, blueprint_id())
flush()
return {1, '', status, finished}
