-- cancel: CAS running|awaiting -> cancelled; nothing new starts, running nodes notice at their
-- next lease renewal and release their instance; the run finishes when none is left.
-- Also answers the instances handed over to a child run (parked "S", or awaiting: maybe a
-- subflow node awaiting with its child), for the caller to cancel those children.
-- A: {ts, now}
-- returns {ok, reason, status, finished, 'n#it', ...}
local m = redis.call('HMGET', K_META, 'status', 'live')
local status = m[1]
local refusal = not_live(status)
if refusal then
  return refusal
end
local handed = {}
local flat = redis.call('HGETALL', K_META)
for i = 1, #flat, 2 do
  local tag = string.sub(flat[i], 1, 2)
  if tag == 'w:' or (tag == 'i:' and flat[i + 1] == 'S') then
    handed[#handed + 1] = string.sub(flat[i], 3)
  end
end
put('status', 'cancelled')
local live = tonumber(m[2]) - drop_unleased(A.now)
put('live', fmt(live))
local finished = maybe_finish(live, 'cancelled', A.ts, blueprint_id())
flush()
local out = {1, '', 'cancelled', finished}
for i = 1, #handed do
  out[#out + 1] = handed[i]
end
return out
