-- park: a subflow node hands over to its child run; the instance stays live and unleased
-- ("S") until `adopt` takes it back to complete it; its epoch and input wait in `sp:`.
-- A run that stopped meanwhile (cancelled, failed) drops the instance instead (the caller
-- cancels the child). A retried park of a parked instance answers 'done' with the outbox.
-- A: {n, it, tok, ts}
-- returns {ok, reason, status, finished, job, ...}
local field, status, r, live = held_for_hand_over()
if not field then
  return status  -- the refusal
end
redis.call('HSET', K_META, field, 'S', 'sp:' .. ikey(A.n, A.it), saved(r))
return {1, '', status, 0}
