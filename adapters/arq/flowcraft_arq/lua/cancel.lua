-- cancel: CAS running|awaiting -> cancelled; nothing new starts, running nodes notice at their
-- next lease renewal and release their instance; the run finishes when none is left.
-- A: {ts, now}
-- returns {ok, reason, status, finished}
local m = redis.call('HMGET', K_META, 'status', 'live')
local status = m[1]
local refusal = not_live(status)
if refusal then
  return refusal
end
put('status', 'cancelled')
local live = tonumber(m[2]) - drop_unleased(A.now)
put('live', fmt(live))
local finished = maybe_finish(live, 'cancelled', A.ts, blueprint_id())
flush()
return {1, '', 'cancelled', finished}
