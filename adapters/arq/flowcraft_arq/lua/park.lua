-- park: a subflow node hands over to its child run; the instance stays live and unleased
-- ("S") until `adopt` takes it back to complete it; its epoch and input wait in `sp:`.
-- A: {n, it, tok}
-- returns {ok, reason, status, 0}
local field = 'i:' .. ikey(A.n, A.it)
local m = redis.call('HMGET', K_META, 'status', field)
local status = m[1]
local r, reason = leased(m[2], status, A.tok)
if not r then
  return {0, reason, status or '', 0}
end
redis.call('HSET', K_META, field, 'S', 'sp:' .. ikey(A.n, A.it), fmt(r.epoch) .. '|' .. r.input)
return {1, '', status, 0}
