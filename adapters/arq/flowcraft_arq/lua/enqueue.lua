-- enqueue (stand-alone, no prelude): put many arq jobs in a queue in one round trip, each as
-- arq's own enqueue_job would (the job key with its envelope, the id in the queue's sorted set)
-- unless a job with that id exists.
-- KEYS: 1 the queue. ARGV: 1 job key prefix, then per job: id, envelope, score (ms), ttl (ms)
-- returns how many were queued
local queued = 0
for i = 2, #ARGV, 4 do
  if redis.call('SET', ARGV[1] .. ARGV[i], ARGV[i + 1], 'PX', ARGV[i + 3], 'NX') then
    redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i])
    queued = queued + 1
  end
end
return queued
