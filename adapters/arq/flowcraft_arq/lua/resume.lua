-- resume: complete an awaiting instance (a wait node) with the given output and routing
-- decisions, exactly like a commit of that node; other awaiting instances keep waiting.
-- A: {g = graph JSON, n, it, w, r, ev, ts, bp, now, park = true for a subflow node}
-- returns {ok, reason, status, finished, job, ...}
local k = ikey(A.n, A.it)
local m = redis.call('HMGET', K_META, 'status', 'live', 'waits', 'w:' .. k)
local status = m[1]
local refusal = not_live(status)
if refusal then
  return refusal
end
if not m[4] then
  return {0, 'not_awaiting', status, 0}
end
redis.call('HDEL', K_META, 'w:' .. k)
local waits = tonumber(m[3] or '1') - 1
put('waits', fmt(waits))
if status == 'awaiting' then
  status = 'running'
  put('status', 'running')
end
if A.park then
  -- a subflow node: back to waiting for its child run, which is resumed next
  put('i:' .. k, 'S')
  put('live', fmt(tonumber(m[2]) + 1))
  events(A.ev)
  flush()
  return {1, '', status, 0}
end
apply_writes(A.w)
events(A.ev)
local fired = {}
if #A.r > 0 then
  route(cjson.decode(A.g), A.n, A.it, A.r, fired, 0, A.now)
end
return settle(tonumber(m[2]) + #fired, status, fired, waits)
