-- park: a subflow node hands over to its child run; the instance stays live and unleased
-- ("S") until `adopt` takes it back to complete it; its epoch and input wait in `sp:`.
-- A: {n, it, tok}
-- returns {ok, reason, status, 0}
local field, status, r = held()
if not field then
  return status  -- the refusal
end
redis.call('HSET', K_META, field, 'S', 'sp:' .. ikey(A.n, A.it), saved(r))
return {1, '', status, 0}
