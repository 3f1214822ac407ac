-- rescore (stand-alone, no prelude: it touches only the global active set, KEYS[1]): a
-- reconcile pass's verdict on one run, applied only while the run's score is still the one the
-- pass read, so a run started or resumed meanwhile (which wrote a newer score) keeps its own.
-- ARGV: 1 run id, 2 score read, 3 new score ('' : remove)
-- returns 1 when applied, 0 when the score had changed
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or (score ~= ARGV[2] and tonumber(score) ~= tonumber(ARGV[2])) then
  return 0
end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
