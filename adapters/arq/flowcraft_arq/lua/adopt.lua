-- adopt: take a parked subflow instance back (its epoch and input as they were), leased by the
-- caller, to complete it.
-- A: {n, it, tok, lease = ms, now = ms}
-- returns {1, '', status, input JSON, 0} or {0, reason, status} unless the run is running and
-- the instance parked
local field = 'i:' .. ikey(A.n, A.it)
local m = redis.call('HMGET', K_META, 'status', field)
if not m[1] then
  return {0, 'unknown', ''}
end
if m[1] ~= 'running' then
  return {0, 'not_running', m[1]}
end
if m[2] ~= 'S' then
  return {0, 'not_fired', m[1]}
end
local r = parse(redis.call('HGET', K_META, 'sp:' .. ikey(A.n, A.it)) or 'F0|||0|null')
r.tok, r.exp, r.fat = A.tok, A.now + A.lease, A.now
redis.call('HSET', K_META, field, record(r))
return {1, '', m[1], r.input, 0}
