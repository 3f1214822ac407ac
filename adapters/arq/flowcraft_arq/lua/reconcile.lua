-- reconcile: re-drive a run. Fired instances nobody holds a live lease on and that were fired
-- at least `stalled` ms ago (a deferred job counts from its defer time) get a new epoch (so a
-- new job id) and go to the outbox; the whole outbox is returned for (re-)enqueueing. Finished
-- instances are never re-fired. A failed or cancelled run drops what nobody runs and finishes.
-- An instance whose deliveries died `cap` times (0: no cap; `d:` counts the re-drives of a
-- claimed instance, not of one still waiting in a backed-up queue) is not re-fired but
-- returned as 'X<n>#<it>[/<item>]#<count>' for the caller to fail.
-- It also tells when the run next needs a pass (its score in the active set: a pass looks at
-- runs scored at least `stalled` ms ago): '' when never (it finished), 'inf' while it awaits
-- (nothing live: only a resume brings it back), else the earliest ms from which one of its
-- instances may be stalled, less `stalled`.
-- A: {stalled = ms, ts, now, cap}
-- returns {status, blueprint id, refired, finished, next, job or exhausted instance, ...}
local flat = redis.call('HGETALL', K_META)
if #flat == 0 then
  return {'unknown', '', 0, 0, ''}
end
local meta = {}
for i = 1, #flat, 2 do
  meta[flat[i]] = flat[i + 1]
end
local status = meta['status'] or ''
local bp = blueprint_id()
if status ~= 'running' and status ~= 'awaiting' then
  if tonumber(meta['live'] or '0') <= 0 then
    return {status, bp, 0, 0, ''}  -- already finished
  end
  local live = tonumber(meta['live'] or '0') - drop_unleased(A.now)
  put('live', fmt(live))
  local finished = maybe_finish(live, status, A.ts, bp)
  flush()
  if finished == 1 then
    return {status, bp, 0, 1, ''}
  end
  return {status, bp, 0, 0, fmt(A.now)}  -- leased instances left: look again later
end
local refired, gone = 0, {}
local jobs = {}
local next_look = nil
local function look_at(ms)
  if next_look == nil or ms < next_look then
    next_look = ms
  end
end
for i = 1, #flat, 2 do
  local f = flat[i]
  if string.sub(f, 1, 2) == 'i:' then
    local r = parse(flat[i + 1])
    local stalled = r and (r.tok == '' or r.exp <= A.now) and r.fat + A.stalled <= A.now
    if flat[i + 1] == 'S' then
      look_at(A.now)  -- a parked subflow node: its child's end may need handing back
    elseif r and not stalled then
      if r.tok ~= '' and r.exp > A.now then
        look_at(math.max(r.fat, r.exp - A.stalled))
      else
        look_at(r.fat)
      end
    elseif stalled and A.cap > 0 and r.tok ~= ''
        and tonumber(meta['d:' .. string.sub(f, 3)] or '0') >= A.cap then
      jobs[#jobs + 1] = 'X' .. string.sub(f, 3) .. '#' .. (meta['d:' .. string.sub(f, 3)])
      look_at(A.now)
    elseif stalled then
      local key = string.sub(f, 3)
      if r.tok ~= '' then  -- a delivery claimed it and died: one more towards the cap
        put('d:' .. key, fmt(tonumber(meta['d:' .. key] or '0') + 1))
      end
      gone['o:' .. key .. '#' .. fmt(r.epoch)] = true
      jobs[#jobs + 1] = refire(f, r, A.now)
      refired = refired + 1
      look_at(A.now)
    end
  elseif string.sub(f, 1, 2) == 'o:' then
    jobs[#jobs + 1] = f
    look_at(A.now)
  end
end
local score = 'inf'
if next_look ~= nil then
  score = fmt(next_look)
elseif status ~= 'awaiting' then
  score = fmt(A.now)
end
local out = {status, bp, refired, 0, score}
local stale = {}
for i = 1, #jobs do
  local j = jobs[i]
  if string.sub(j, 1, 2) == 'o:' then
    if gone[j] then
      stale[#stale + 1] = j
    else
      out[#out + 1] = meta[j]
    end
  else
    out[#out + 1] = j
  end
end
if #stale > 0 then
  call_sliced('HDEL', K_META, stale)
end
flush()
return out
