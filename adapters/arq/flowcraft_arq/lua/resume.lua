-- resume: complete an awaiting instance (a wait node) with the given output and routing
-- decisions, exactly like a commit of that node; other awaiting instances keep waiting.
-- The outbox fields of the jobs it fires are kept in `r:n#it` until they are all queued: a
-- retried resume (its caller died before queueing them) answers with those still waiting
-- instead of refusing, so it fires nothing twice and loses nothing.
-- A: {gs = graph records (see node_of), n, it, w, r, ev, ts, bp, now, park = true for a subflow node}
-- returns {ok, reason, status, finished, job, ...}
local k = ikey(A.n, A.it)
local m = redis.call('HMGET', K_META, 'status', 'live', 'waits', 'w:' .. k, 'r:' .. k)
local status = m[1]
local refusal = not_live(status)
if refusal then
  return refusal
end
if not m[4] then
  if m[5] and not A.park then
    local fields = {}
    for f in string.gmatch(m[5], '[^ ]+') do
      fields[#fields + 1] = f
    end
    local pending = call_sliced('HMGET', K_META, fields)
    local out = {1, '', status, 0}
    for i = 1, #fields do
      if pending[i] then
        out[#out + 1] = pending[i]
      end
    end
    if #out > 4 then
      return out
    end
    redis.call('HDEL', K_META, 'r:' .. k)
  end
  return {0, 'not_awaiting', status, 0}
end
if not A.park and graph_missing(A.r) then
  return {0, 'nograph', status, 0}
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
  route(A.n, A.it, A.r, fired, 0, A.now)
end
if #fired > 0 then
  local fields = {}
  for i = 1, #fired do
    local n, it, ep = string.match(fired[i], '^(%d+),(%d+),(%d+)')
    fields[i] = 'o:' .. n .. '#' .. it .. '#' .. ep
  end
  put('r:' .. k, table.concat(fields, ' '))
end
return settle(tonumber(m[2]) + #fired, status, fired, waits)
