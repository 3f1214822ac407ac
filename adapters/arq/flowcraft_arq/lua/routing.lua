-- flowcraft: firing, enqueueing and routing (composed after lib.lua and graph.lua: see
-- flowcraft_arq/scripts.py). A commit (or start, or resume) fires the instances its
-- resolutions make ready, claims some for its caller (fusion), enqueues the rest, and settles.
-- an instance is fired at most once: a second resolution that makes it ready is ignored. Its
-- fired time is when its job is due (a deferred job's defer time): reconcile counts the
-- successor of a durable sleep as stalled only `stalled_after` after the sleep ends
-- Up to A.fz fired instances that are due now are claimed for the caller (fusion: the caller
-- runs them at once, with the lease A.lease and the tokens A.ftok .. '.' .. k); the others
-- go to the outbox, or straight to the queue when the script enqueues (A.q, see enqueue()).
local function fire(n, it, input, fired, defer, now)
  local k = ikey(n, it)
  if getf('i:' .. k) then
    return
  end
  local job = fmt(n) .. ',' .. fmt(it) .. ',0,' .. fmt(defer)
  fired[#fired + 1] = job
  if A.fz and NCLAIMED < A.fz and defer == 0 then
    put('i:' .. k, 'F0|' .. A.ftok .. '.' .. fmt(NCLAIMED) .. '|' .. fmt(now + A.lease) .. '|'
      .. fmt(now) .. '|' .. input)
    NCLAIMED = NCLAIMED + 1
    CLAIMED[job] = input
    return
  end
  put('i:' .. k, 'F0|||' .. fmt(math.max(now, defer)) .. '|' .. input)
  if not A.q then
    put('o:' .. k .. '#0', job)
  end
end

-- Write the arq job of `job` ("n,it,epoch,defer ms[,item]") as arq's own enqueue would (the job
-- key holding the msgpack envelope, the id in the queue's sorted set, due at the defer time),
-- (no existence check: a job id names one instance at one epoch, and an instance fires once per
-- epoch). Enqueueing inside the transition makes deciding a job and queueing it one atomic
-- step, so no outbox entry is needed.
-- A.q = {k = queue key, p = job key prefix, f = function name, v = blueprint version or false,
--        bp = blueprint id}; the payload is flowcraft's JobPayload (an array, see protocols.py)
local function enqueue(job, now)
  local n, it, epoch, defer, item = string.match(job, '^(%d+),(%d+),(%d+),(%d+),?(%-?%d*)$')
  local node_id = node_of(tonumber(n))[1]
  if item == '' then
    item = -1
  else
    item = tonumber(item)
  end
  local label = node_id
  if item >= 0 then
    label = node_id .. '[' .. fmt(item) .. ']'
  end
  local id = RUN_ID .. ':' .. label .. ':' .. it .. ':' .. epoch
  local key = A.q.p .. id
  local due = tonumber(defer)
  if due < now then
    due = now
  end
  local version = '\192'
  if A.q.v then
    version = cmsgpack.pack(A.q.v)
  end
  local payload = '\153' .. cmsgpack.pack(RUN_ID, A.q.bp, node_id, tonumber(it), 1,
    tonumber(epoch)) .. version .. cmsgpack.pack(item) .. '\128'
  local envelope = '\133' .. cmsgpack.pack('t') .. '\192' .. cmsgpack.pack('f', A.q.f, 'a')
    .. '\145' .. payload .. cmsgpack.pack('k') .. '\128' .. cmsgpack.pack('et', now)
  redis.call('SET', key, envelope, 'PX', fmt(due - now + 86400000))
  redis.call('ZADD', A.q.k, fmt(due), id)
end

-- The reply entries of the jobs a call fired: 'c' .. job followed by its input for each one
-- claimed for the caller; 'q' .. job for each one enqueued here; the bare job for each one left
-- in the outbox for the caller to enqueue.
local function handed_over(fired, out, now)
  for i = 1, #fired do
    local job = fired[i]
    local input = CLAIMED[job]
    if input ~= nil then
      out[#out + 1] = 'c' .. job
      out[#out + 1] = input
    elseif A.q then
      enqueue(job, now)
      out[#out + 1] = 'q' .. job
    else
      out[#out + 1] = job
    end
  end
  return out
end

-- After a completion has been routed: store the live count, finish the run when nothing is
-- live any more, and build the reply {1, '', status, finished, fired jobs...} (see handed_over()).
local function settle(live, status, fired, waits)
  put('live', fmt(live))
  local finished, now_status = maybe_finish(live, status, A.ts, A.bp, waits)
  flush()
  -- bit 1: finished now; bit 2: the run has a parent run, bit 3: it has none (unknown: 0)
  if HAS_PARENT ~= nil then
    finished = finished + (HAS_PARENT and 2 or 4)
  end
  return handed_over(fired, {1, '', now_status, finished}, A.now)
end

-- the iteration at which loop controller c was entered, seen from iteration it
local function entry_of(c, it)
  local p = getf('p:' .. fmt(it))
  if p then
    local pc, entry = string.match(p, '^(%d+),(%d+)$')
    if tonumber(pc) == c then
      return tonumber(entry)
    end
  end
  return it
end

-- the field of the value edge e carries into an `all` join at iteration it
local function edge_value_field(e, it)
  return 'e:' .. fmt(e) .. '#' .. fmt(it)
end

-- The meta fields routing `res` (resolutions at iteration it) will read for the targets its
-- normal edges reach: their instance, join counter, taken marker and edge values, so that
-- a commit reads them with its first HMGET instead of one command each.
local function read_ahead(res, it)
  local fields = {}
  for i = 1, #res do
    local edge = edge_of(res[i][1])
    if edge[3] == 0 then
      local node = node_of(edge[2])
      local k = ikey(edge[2], it)
      fields[#fields + 1] = 'i:' .. k
      local required = node[3]
      if count_of(required) > 1 then
        fields[#fields + 1] = 'j:' .. k
        if node[2] % 2 == 1 then
          fields[#fields + 1] = 't:' .. k
        elseif type(required) == 'table' then  -- a large join reads them once, at the end
          for r = 1, #required do
            fields[#fields + 1] = edge_value_field(required[r], it)
          end
        end
      end
    end
  end
  return fields
end

-- HMGET the fields `first` and then `ahead` (remembered in PRE); returns the values of `first`
local function read_with(first, ahead)
  local fields = {}
  for i = 1, #first do
    fields[i] = first[i]
  end
  for i = 1, #ahead do
    fields[#fields + 1] = ahead[i]
  end
  local got = call_sliced('HMGET', K_META, fields)
  for i = 1, #ahead do
    PRE[ahead[i]] = got[#first + i]
  end
  return got
end

-- resolve edge e at iteration it (see node_of/edge_of for the graph records)
local function resolve(e, it, taken, value, fired, skips, defer, now)
  local edge = edge_of(e)
  local tgt = edge[2]
  local node = node_of(tgt)
  local flags = node[2]
  if math.floor(flags / 2) % 2 == 1 then
    return
  end
  local required = node[3]
  if edge[3] == 1 then
    required = node[4]
  end
  local needed = count_of(required)
  if needed == 1 then
    if taken then
      fire(tgt, it, value, fired, defer, now)
    else
      skips[#skips + 1] = {tgt, it}
    end
    return
  end
  -- a join's fields (j: resolved count, t: taken marker of an `any` join, e: values of the
  -- taken edges into an `all` join) are deleted once all its required edges are resolved:
  -- nothing resolves them again, so a long loop leaves only its instances behind
  local k = ikey(tgt, it)
  local resolved = tonumber(getf('j:' .. k) or '0') + 1
  put('j:' .. k, fmt(resolved))
  local is_any = flags % 2 == 1
  local complete = resolved >= needed
  if taken then
    if is_any then
      local first = not getf('t:' .. k)
      put('t:' .. k, '1')
      if first then
        fire(tgt, it, '{' .. cjson.encode(edge[4]) .. ':' .. value .. '}', fired,
          defer, now)
      end
    elseif not complete then
      put(edge_value_field(e, it), value)
    end
  end
  if not complete then
    return
  end
  if is_any then
    if not getf('t:' .. k) then
      skips[#skips + 1] = {tgt, it}
    end
    forget({'j:' .. k, 't:' .. k})
    return
  end
  if type(required) == 'number' then  -- a large join: its edge list, and their records
    node = full_node(tgt)
    required = node[3]
    if edge[3] == 1 then
      required = node[4]
    end
  end
  load_edges(required)
  local fields, missing = {}, {}
  for i = 1, #required do
    local f = edge_value_field(required[i], it)
    fields[i] = f
    if required[i] ~= e and W[f] == nil and PRE[f] == nil then
      missing[#missing + 1] = f
    end
  end
  local stored = {}
  if #missing > 0 then
    local got = call_sliced('HMGET', K_META, missing)
    for i = 1, #missing do
      stored[missing[i]] = got[i]
    end
  end
  local parts = {}
  for i = 1, #required do
    local f = fields[i]
    local v
    if required[i] == e then
      v = taken and value
    else
      v = W[f]
      if v == nil then
        v = PRE[f]
      end
      if v == nil then
        v = stored[f]
      end
    end
    if v then
      parts[#parts + 1] = cjson.encode(edge_of(required[i])[4]) .. ':' .. v
    end
  end
  fields[#fields + 1] = 'j:' .. k
  forget(fields)
  if #parts > 0 then
    fire(tgt, it, '{' .. table.concat(parts, ',') .. '}', fired, defer, now)
  else
    skips[#skips + 1] = {tgt, it}
  end
end

-- res: {{edge, taken, value}}; a BACK edge (kind 1, a controller's continue) resolves at a
-- fresh iteration, an EXIT edge (kind 2, its break) at the loop's entry iteration
local function route(n, it, res, fired, defer, now)
  local skips = {}
  local fresh = nil
  for i = 1, #res do
    local r = res[i]
    local kind = edge_of(r[1])[3]
    local tit = it
    if kind == 1 then
      if fresh == nil then
        fresh = redis.call('HINCRBY', K_META, 'iter', 1)
        local entry = entry_of(n, it)
        put('p:' .. fmt(fresh), fmt(n) .. ',' .. fmt(entry))
        redis.call('HINCRBY', K_META, 'n:' .. ikey(n, entry), 1)
      end
      tit = fresh
    elseif kind == 2 then
      tit = entry_of(n, it)
    end
    resolve(r[1], tit, r[2], r[3], fired, skips, defer, now)
  end
  while #skips > 0 do
    local s = table.remove(skips)
    local node = full_node(s[1])
    if A.sk then
      fact({fact = 'skipped', node_id = node[1], iteration = s[2], ts = A.ts})
    end
    local ctrl = math.floor(node[2] / 4) % 2 == 1
    local outs = node[5]
    for i = 1, #outs do
      local e = outs[i]
      local kind = edge_of(e)[3]
      if kind == 2 then
        resolve(e, entry_of(s[1], s[2]), false, '', fired, skips, defer, now)
      elseif not ctrl then
        resolve(e, s[2], false, '', fired, skips, defer, now)
      end
    end
  end
end
