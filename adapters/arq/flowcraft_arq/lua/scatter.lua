-- scatter: a batch instance hands its items out: each item becomes a fired instance with its
-- own job; the batch instance stays live ("B") until the last item's commit gathers the
-- outputs (see commit.lua), then completes like any node. At most `conc` items run at once
-- (0: all): the others are held ("H<input>") and released one per finished item.
-- A retried scatter (its caller died before queueing the items' jobs) is refused 'done' with
-- the outbox to queue; a run that stopped meanwhile drops the batch instance instead.
-- A: {n, it, tok, items = {item JSON, ...}, ev, now, conc, ts}
-- returns {ok, reason, status, finished, job, ...}
local field, status, r, live = held_for_hand_over()
if not field then
  return status  -- the refusal
end
local bk = ikey(A.n, A.it)
put(field, 'B')
put('be:' .. bk, fmt(r.epoch))
put('bn:' .. bk, fmt(#A.items))
put('b:' .. bk, fmt(#A.items))
local first = #A.items
if A.conc > 0 and A.conc < first then
  first = A.conc
end
put('bq:' .. bk, fmt(first))
local out = {1, '', status, 0}
for k = 0, #A.items - 1 do
  local f = ikey(A.n, A.it, k)
  if k < first then
    put('i:' .. f, 'F0|||' .. fmt(A.now) .. '|' .. A.items[k + 1])
    local job = fmt(A.n) .. ',' .. fmt(A.it) .. ',0,0,' .. fmt(k)
    put('o:' .. f .. '#0', job)
    out[#out + 1] = job
  else
    put('i:' .. f, 'H' .. A.items[k + 1])
  end
end
put('live', fmt(live + #A.items))
events(A.ev)
flush()
return out
