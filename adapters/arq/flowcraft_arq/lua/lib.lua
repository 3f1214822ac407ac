-- flowcraft: shared prelude of every script (prepended, with graph.lua and routing.lua, when
-- the scripts are loaded: see flowcraft_arq/scripts.py).
--
-- KEYS (all of one run, one hash tag): 1 meta  2 ctx  3 errors  4 events
--   5 blueprint-id fallback; and for the scripts that route (commit, resume) 6 the graph: a
--   hash per graph shape, "n<i>" -> node record, "e<j>" -> edge record (see GraphSpec in
--   flowcraft/runtime/spec.py), shared by every run of that shape
-- ARGV: 1 run id  2 pub/sub channel  3 result TTL (ms)  4 event log max length
--   5 msgpack document with the script's own arguments
--
-- The meta hash holds the run's metadata (blueprint_id, version, status, created, live = fired
-- and not finished instances, waits = awaiting instances, iter = last loop iteration id) and
-- its bookkeeping, one field per fact (n = node index, it = iteration, e = edge index):
--   i:n#it     instance: "F<epoch>|<lease token>|<lease expiry ms>|<fired ms>|<input JSON>"
--              while fired, then "D" (done), "X" (failed) or "C" (dropped: run stopped); a
--              batch instance is "B" while its items run and "G<epoch>|...|<outputs JSON>"
--              once they all finished (leasable like "F": its completion is left to do)
--   i:n#it/k   item k of a batch instance (same states as an instance)
--              a subflow instance is "S" (parked) while its child run runs
--   b:n#it     items of a batch still running     bn:n#it  items of the batch
--   bq:n#it    index of the next item held back by the batch's concurrency ("H<input>")
--   be:n#it    epoch of a batch instance while its items run
--   sp:n#it    a parked subflow instance's record ("F<epoch>|||0|<input>"), for adopt
--   v:n#it/k   output (JSON) of item k
--   o:n#it#ep  outbox: "n,it,epoch,defer ms" of a job decided but not yet confirmed queued
--              (not written when the script enqueues the job itself: see enqueue())
--   j:n#it     resolved required edges of a join      t:n#it  taken edges of an `any` join
--   e:e#it     value (JSON) of a taken edge into an `all` join
--              (j:, t:, e: are deleted once the join has all its required edges resolved)
--   p:it       "c,entry": fresh iteration it was made by loop controller c, entered at entry
--   n:n#it     continues of loop controller n for loop entry iteration it
--   x:n#it     pill ("poison" / "cancel") left by a failed predecessor (only once the run
--              failed, when nothing new starts: they do not accumulate)
--   w:n#it     node id of an awaiting instance (wait), until resumed
--   d:n#it[/k] how many times reconcile re-drove the instance after a delivery claimed it and
--              died (the max_redrives cap, see reconcile.lua)
--   r:n#it     outbox fields (space separated) of the jobs a resume of n#it fired, kept
--              until they are queued, so a retried resume re-drives them (resume.lua)
-- Writes to the meta hash are buffered and flushed with one HSET at the end of a script;
-- events are buffered and appended with one XADD.
local K_META, K_CTX, K_ERRORS = KEYS[1], KEYS[2], KEYS[3]
local K_EVENTS, K_BP, K_GRAPH = KEYS[4], KEYS[5], KEYS[6]
local RUN_ID, CHANNEL, TTL, MAXLEN = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local A = cmsgpack.unpack(ARGV[5])

local W, WN, EV = {}, {}, {}
-- instances this call claimed for its caller to run at once (fusion): job -> input
local CLAIMED, NCLAIMED = {}, 0
-- whether the run is a child run, when the script read it (settle() reports it)
local HAS_PARENT = nil

-- redis.call(cmd, key, args...) in slices of at most SLICE values (even, so field/value
-- pairs stay together): Lua's unpack cannot spread more than a few thousand values, and a script
-- that stopped there would leave its earlier writes applied. Returns the replies joined.
local SLICE = 2000
local function call_sliced(cmd, key, args)
  local out = {}
  for i = 1, #args, SLICE do
    local reply = redis.call(cmd, key, unpack(args, i, math.min(i + SLICE - 1, #args)))
    if type(reply) == 'table' then
      for k = 1, #reply do
        out[#out + 1] = reply[k]
      end
    end
  end
  return out
end

-- field -> value (false: absent) read ahead with the call's first HMGET (see read_ahead())
local PRE = {}
-- fields to delete at the flush
local DEL = {}

local function put(f, v)
  if W[f] == nil then
    WN[#WN + 1] = f
  end
  W[f] = v
  DEL[f] = nil
end


local function getf(f)
  local v = W[f]
  if v ~= nil then
    return v
  end
  if DEL[f] then
    return false
  end
  v = PRE[f]
  if v ~= nil then
    return v
  end
  return redis.call('HGET', K_META, f)
end

-- delete meta fields at the flush, also from the buffered writes (bookkeeping that can no
-- longer matter)
local function forget(fields)
  for i = 1, #fields do
    W[fields[i]] = nil
    DEL[fields[i]] = true
  end
end

local function events(list)
  if list then
    for i = 1, #list do
      EV[#EV + 1] = {'e', list[i]}
    end
  end
end

local function flush()
  local args = {}
  for i = 1, #WN do
    local v = W[WN[i]]
    if v ~= nil then
      args[#args + 1] = WN[i]
      args[#args + 1] = v
    end
  end
  if #args > 0 then
    call_sliced('HSET', K_META, args)
  end
  local gone = {}
  for f in pairs(DEL) do
    gone[#gone + 1] = f
  end
  if #gone > 0 then
    call_sliced('HDEL', K_META, gone)
  end
  W, WN, PRE, DEL = {}, {}, {}, {}
  -- one stream entry per script call, or per SLICE / 2 events of a very large one
  for first = 1, #EV, SLICE / 2 do
    local args = {'MAXLEN', '~', MAXLEN, '*'}
    for i = first, math.min(first + SLICE / 2 - 1, #EV) do
      args[#args + 1] = EV[i][1] .. i
      args[#args + 1] = EV[i][2]
    end
    redis.call('XADD', K_EVENTS, unpack(args))
  end
  EV = {}
end

local function fmt(n)
  return string.format('%d', n)
end

local function ikey(n, it, item)
  if item ~= nil and item >= 0 then
    return fmt(n) .. '#' .. fmt(it) .. '/' .. fmt(item)
  end
  return fmt(n) .. '#' .. fmt(it)
end

-- parse a leasable instance record ("F..." or "G..."); nil for any other state
local function parse(v)
  local head, kind, epoch, tok, exp, fat = string.match(v,
    '^(([FG])(%d+)|([^|]*)|(%d*)|(%d*)|)')
  if not head then
    return nil
  end
  return {kind = kind, epoch = tonumber(epoch), tok = tok, exp = tonumber(exp) or 0,
          fat = tonumber(fat) or 0, input = string.sub(v, #head + 1)}
end

local function record(r)
  return r.kind .. fmt(r.epoch) .. '|' .. r.tok .. '|' .. fmt(r.exp) .. '|' .. fmt(r.fat)
    .. '|' .. r.input
end

-- an instance record as it waits while parked (`sp:`): epoch and input, no lease
local function saved(r)
  return record({kind = 'F', epoch = r.epoch, tok = '', exp = 0, fat = 0, input = r.input})
end

local function apply_writes(w)
  if w == nil or #w == 0 then
    return
  end
  local sets, has_del = {}, false
  for i = 1, #w, 2 do
    if w[i + 1] == false then
      has_del = true
    else
      sets[#sets + 1] = w[i]
      sets[#sets + 1] = w[i + 1]
    end
  end
  if not has_del then
    call_sliced('HSET', K_CTX, sets)
    return
  end
  -- writes are ordered; a key both set and deleted keeps its last operation
  for i = 1, #w, 2 do
    if w[i + 1] == false then
      redis.call('HDEL', K_CTX, w[i])
    else
      redis.call('HSET', K_CTX, w[i], w[i + 1])
    end
  end
end

local function blueprint_id()
  local bp = getf('blueprint_id')
  if not bp or bp == '' then
    bp = redis.call('GET', K_BP) or ''
  end
  return bp
end

-- Scripts record facts, Python builds the views: a stream entry 'f' is a fact (a table encoded
-- by cjson) that flowcraft_arq.store turns into an event with flowcraft.events; results are
-- built from the meta, ctx and errors keys on read (flowcraft.result.result_of).
local function fact(f)
  EV[#EV + 1] = {'f', cjson.encode(f)}
end

local function finish(status, ts, bp)
  put('status', status)
  if ts ~= nil and ts ~= '' then
    fact({fact = 'finish', status = status, ts = ts})
  end
  flush()
  redis.call('PEXPIRE', K_META, TTL)
  redis.call('PEXPIRE', K_CTX, TTL)
  if status ~= 'completed' then  -- a completed run has no errors list
    redis.call('PEXPIRE', K_ERRORS, TTL)
  end
  redis.call('PEXPIRE', K_EVENTS, TTL)
  redis.call('PEXPIRE', K_BP, TTL)
  redis.call('PUBLISH', CHANNEL, status .. '|' .. (bp or ''))
end

-- call whenever `live` may have reached 0; returns 1 when the run finished now, and the
-- run's status afterwards
local function maybe_finish(live, status, ts, bp, waits)
  if live > 0 then
    return 0, status
  end
  if status == 'running' then
    if waits ~= nil and waits > 0 then
      put('status', 'awaiting')
      flush()
      if ts ~= nil and ts ~= '' then
        local flat = redis.call('HGETALL', K_META)
        local ids = {}
        for i = 1, #flat, 2 do
          if string.sub(flat[i], 1, 2) == 'w:' then
            ids[#ids + 1] = flat[i + 1]
          end
        end
        table.sort(ids)
        fact({fact = 'pause', awaiting = ids, ts = ts})
      end
      flush()
      redis.call('PUBLISH', CHANNEL, 'awaiting')
      return 0, 'awaiting'
    end
    status = 'completed'
  end
  if status == 'awaiting' then
    return 0, status
  end
  finish(status, ts, bp)
  return 1, status
end

-- the outbox entries (values) in a HGETALL of the meta hash
local function outbox_of(flat)
  local out = {}
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 2) == 'o:' then
      out[#out + 1] = flat[i + 1]
    end
  end
  return out
end

-- a refusal with the outbox appended: the jobs a retried call (whose first attempt was recorded
-- but perhaps not queued) must queue
local function with_outbox(refusal)
  local jobs = outbox_of(redis.call('HGETALL', K_META))
  for i = 1, #jobs do
    refusal[#refusal + 1] = jobs[i]
  end
  return refusal
end

-- Give the leasable instance in field f (record r) a new epoch, so a new job id, and put that
-- job in the outbox; returns the job ("n,it,epoch,0[,item]")
local function refire(f, r, now)
  local key = string.sub(f, 3)
  local n, it, item = string.match(key, '^(%d+)#(%d+)/?(%d*)$')
  r.epoch, r.tok, r.exp, r.fat = r.epoch + 1, '', 0, now
  put(f, record(r))
  local job = n .. ',' .. it .. ',' .. fmt(r.epoch) .. ',0'
  if item ~= '' then
    job = job .. ',' .. item
  end
  put('o:' .. key .. '#' .. fmt(r.epoch), job)
  return job
end

-- A queue job delivered again finds its own instance done: the successors its first delivery
-- claimed and ran on (fusion) have no job of their own, so re-fire (new epoch, outbox) those
-- still leased by that delivery, whose tokens start with `mine` (see fused_token in
-- protocols.py), once their lease ended. Returns the re-fired jobs, and whether some are
-- still leased (then the caller asks to be retried later).
local function orphans_of(flat, mine, now)
  local jobs, waiting = {}, false
  for i = 1, #flat, 2 do
    local f = flat[i]
    if string.sub(f, 1, 2) == 'i:' then
      local r = parse(flat[i + 1])
      if r and string.sub(r.tok, 1, #mine) == mine then
        if r.exp > now then
          waiting = true
        else
          jobs[#jobs + 1] = refire(f, r, now)
        end
      end
    end
  end
  return jobs, waiting
end

-- drop fired instances nobody holds a live lease on (the run failed or was cancelled) and
-- clear the outbox; returns how many were dropped
local function drop_unleased(now)
  local flat = redis.call('HGETALL', K_META)
  local dropped, stale = 0, {}
  for i = 1, #flat, 2 do
    local f = flat[i]
    local kind = string.sub(f, 1, 2)
    if kind == 'o:' or kind == 'w:' then
      stale[#stale + 1] = f
    elseif kind == 'i:' and W[f] == nil then
      local v = flat[i + 1]
      if v == 'B' or v == 'S' or string.sub(v, 1, 1) == 'H' then
        put(f, 'C')
        dropped = dropped + 1
      else
        local r = parse(v)
        if r and (r.tok == '' or r.exp <= now) then
          put(f, 'C')
          dropped = dropped + 1
        end
      end
    end
  end
  if #stale > 0 then
    call_sliced('HDEL', K_META, stale)
    put('waits', '0')
  end
  return dropped
end

-- check the caller's lease on instance field f; returns record or nil, reason
local function leased(m, status, tok)
  if not status then
    return nil, 'unknown'
  end
  if not m then
    return nil, 'not_fired'
  end
  local r = parse(m)
  if not r then
    return nil, 'done'
  end
  if r.tok ~= tok then
    return nil, 'stale'
  end
  return r, ''
end

-- the caller's leased instance A.n#A.it[/A.item]: its field, the run status, its record and
-- the live count; or nil and the refusal to return
local function held()
  local field = 'i:' .. ikey(A.n, A.it, A.item)
  local m = redis.call('HMGET', K_META, 'status', field, 'live')
  local r, reason = leased(m[2], m[1], A.tok)
  if not r then
    return nil, {0, reason, m[1] or '', 0}
  end
  return field, m[1], r, tonumber(m[3])
end

-- nil when a run with `status` is running or awaiting (so it may be resumed or cancelled),
-- else the refusal to return
local function not_live(status)
  if not status then
    return {0, 'unknown', '', 0}
  end
  if status ~= 'running' and status ~= 'awaiting' then
    return {0, 'not_running', status, 0}
  end
  return nil
end

-- the caller's leased instance for a hand-over (scatter, park), as held(); but a retried call
-- (the instance was handed over already) is refused 'done' with the outbox to queue, and a run
-- that stopped meanwhile drops the instance (the caller stops what it would have handed over)
local function held_for_hand_over()
  local field, status, r, live = held()
  if not field then
    if status[2] == 'done' then
      return nil, with_outbox(status)
    end
    return nil, status
  end
  if status ~= 'running' then
    put(field, 'C')
    put('live', fmt(live - 1))
    local finished = maybe_finish(live - 1, status, A.ts, blueprint_id())
    flush()
    return nil, {0, 'not_running', status, finished}
  end
  return field, status, r, live
end
