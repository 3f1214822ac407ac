-- commit: record one node completion atomically. Verifies the lease token (a stale worker's
-- commit is rejected), applies the node's context writes and output, records its edge
-- decisions, propagates skips, evaluates joins, fires ready successors exactly once, puts
-- them in the outbox, and finishes the run when nothing is live any more.
-- A: {gs = graph records (see node_of), n, it, tok, w = {k, json|false, ...}, r = {{edge, taken, value}},
--     ev = {event, ...}, ts, bp, now, df = defer ms, aw = node id when the node now awaits,
--     item = batch item index or -1, out = the item's output JSON, lease = ms,
--     fz = how many fired successors to claim for the caller, ftok = their token prefix,
--     q = the queue to enqueue the others in (see fire() and enqueue())}
-- returns {ok, reason, status, finished, job, ...} (see handed_over()); for the last item of a batch
--   {1, '', status, 0, 'G' .. outputs JSON} (the caller now holds the batch's lease)
local field = 'i:' .. ikey(A.n, A.it, A.item)
local ahead = {}
if A.item < 0 and not A.aw then
  ahead = read_ahead(A.r, A.it)
end
local m = read_with({'status', field, 'live', 'waits', 'parent_run'}, ahead)
HAS_PARENT = m[5] ~= false
local status = m[1]
local r, reason = leased(m[2], status, A.tok)
if not r then
  local out = {0, reason, status or '', 0}
  if reason == 'done' then
    -- e.g. a retried call whose first attempt was recorded: re-drive what it decided
    local jobs = outbox_of(redis.call('HGETALL', K_META))
    for i = 1, #jobs do
      out[#out + 1] = jobs[i]
    end
  end
  return out
end
if A.item < 0 and not A.aw and graph_missing(A.r) then
  return {0, 'nograph', status, 0}
end
put(field, 'D')
apply_writes(A.w)
events(A.ev)
if A.item >= 0 then
  local bk = ikey(A.n, A.it)
  put('v:' .. field:sub(3), A.out)
  local live = tonumber(m[3]) - 1
  local left = redis.call('HINCRBY', K_META, 'b:' .. bk, -1)
  local gathered = nil
  local released = nil
  local next_item = tonumber(getf('bq:' .. bk) or '0')
  if status == 'running' and next_item < tonumber(getf('bn:' .. bk) or '0') then
    -- the batch's concurrency held this item back: release it now
    local f = ikey(A.n, A.it, next_item)
    local held = getf('i:' .. f)
    put('bq:' .. bk, fmt(next_item + 1))
    put('i:' .. f, 'F0|||' .. fmt(A.now) .. '|' .. string.sub(held, 2))
    released = fmt(A.n) .. ',' .. fmt(A.it) .. ',0,0,' .. fmt(next_item)
    put('o:' .. f .. '#0', released)
  end
  if left == 0 and status == 'running' and getf('i:' .. bk) == 'B' then
    local total = tonumber(getf('bn:' .. bk))
    local fields = {}
    for k = 0, total - 1 do
      fields[#fields + 1] = 'v:' .. bk .. '/' .. fmt(k)
    end
    local vals = call_sliced('HMGET', K_META, fields)
    for i = 1, #fields do
      if W[fields[i]] ~= nil then
        vals[i] = W[fields[i]]
      end
      if not vals[i] then
        vals[i] = 'null'
      end
    end
    gathered = '[' .. table.concat(vals, ',') .. ']'
    put('i:' .. bk, 'G' .. (getf('be:' .. bk) or '0') .. '|' .. A.tok .. '|'
      .. fmt(A.now + A.lease) .. '|' .. fmt(A.now) .. '|' .. gathered)
  end
  put('live', fmt(live))
  local finished = maybe_finish(live, status, A.ts, A.bp)
  flush()
  if gathered then
    return {1, '', status, 0, 'G' .. gathered}
  end
  if released then
    return {1, '', status, finished, released}
  end
  return {1, '', status, finished}
end
local fired = {}
local waits = tonumber(m[4] or '0')
if A.aw then
  put('w:' .. ikey(A.n, A.it), A.aw)
  -- a subflow node parked again by a resume keeps its epoch and input (see park.lua)
  put('sp:' .. ikey(A.n, A.it), saved(r))
  waits = waits + 1
  put('waits', fmt(waits))
elseif status == 'running' and #A.r > 0 then
  local defer = 0
  if A.df > 0 then
    defer = A.now + A.df
  end
  route(A.n, A.it, A.r, fired, defer, A.now)
end
return settle(tonumber(m[3]) + #fired - 1, status, fired, waits)
