-- commit_many: the commits of several runs in one call (one round trip for the commits a
-- worker's concurrent jobs made at about the same time). Composed as the prelude (see
-- scripts.py), then commit.lua wrapped into `commit_one`, then this driver, which runs
-- commit_one once per commit with the prelude's per-call state (keys, run id, arguments,
-- buffers) set to that commit's.
-- KEYS: per commit the six keys of a routing script (lib.lua). ARGV: 1-2 unused, 3 result TTL,
-- 4 event log max length, 5 msgpack list of {run id, channel, commit arguments}
-- returns the list of the commits' replies, in order
local batch = A
local replies = {}
for i = 1, #batch do
  local k = (i - 1) * 6
  K_META, K_CTX, K_ERRORS = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  K_EVENTS, K_BP, K_GRAPH = KEYS[k + 4], KEYS[k + 5], KEYS[k + 6]
  RUN_ID, CHANNEL, A = batch[i][1], batch[i][2], batch[i][3]
  W, WN, EV, PRE, DEL = {}, {}, {}, {}, {}
  CLAIMED, NCLAIMED, HAS_PARENT = {}, 0, nil
  GRAPH, SEEDS = {}, {}
  for j = 1, #(A.gs or {}), 2 do
    SEEDS[A.gs[j]] = A.gs[j + 1]
  end
  replies[i] = commit_one()
end
return replies
