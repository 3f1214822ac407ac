-- release: give up a claimed instance without completing it. While the run is running the
-- instance stays fired (another delivery runs it); once the run is failed or cancelled it is
-- dropped, which may finish the run.
-- A: {n, it, item, tok, ts}
-- returns {ok, reason, status, finished}
local field = 'i:' .. ikey(A.n, A.it, A.item)
local m = redis.call('HMGET', K_META, 'status', field, 'live')
local status = m[1]
local r, reason = leased(m[2], status, A.tok)
if not r then
  return {0, reason, status or '', 0}
end
if status == 'running' then
  r.tok = ''
  r.exp = 0
  redis.call('HSET', K_META, field, record(r))
  return {1, '', status, 0}
end
put(field, 'C')
local live = tonumber(m[3]) - 1
put('live', fmt(live))
local finished = maybe_finish(live, status, A.ts, blueprint_id())
flush()
return {1, '', status, finished}
