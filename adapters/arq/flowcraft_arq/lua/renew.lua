-- renew: extend the caller's lease; returns the run status, or false when the lease is lost.
-- A: {n, it, item, tok, lease = ms, now = ms}
local field = 'i:' .. ikey(A.n, A.it, A.item)
local m = redis.call('HMGET', K_META, 'status', field)
local r = leased(m[2], m[1], A.tok)
if not r then
  return false
end
r.exp = A.now + A.lease
redis.call('HSET', K_META, field, record(r))
return m[1]
