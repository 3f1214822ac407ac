-- flowcraft: the graph as the routing scripts read it (composed after lib.lua, before
-- routing.lua: see flowcraft_arq/scripts.py).
-- The graph, read lazily: records the caller sent (A.gs = {field, JSON, ...}: those this call
-- is expected to need) and otherwise the graph hash, so a call costs what it touches, not the
-- size of the graph. Node record: {id, flags, forward_in, back_in, out}; edge record:
-- {source, target, kind, source id}. Flags: 1 any-join, 2 fallback-only, 4 loop controller;
-- edge kinds: 0 normal 1 back 2 exit.
local GRAPH, SEEDS = {}, {}
if A.gs then
  for i = 1, #A.gs, 2 do
    SEEDS[A.gs[i]] = A.gs[i + 1]
  end
end
local function graph_record(f)
  local rec = GRAPH[f]
  if rec == nil then
    local raw = SEEDS[f] or redis.call('HGET', K_GRAPH, f)
    if not raw then
      error({err = 'flowcraft: graph record ' .. f .. ' missing in ' .. K_GRAPH})
    end
    rec = cjson.decode(raw)
    GRAPH[f] = rec
  end
  return rec
end
-- Routing reads records beyond the seeds only to propagate skips or to complete a large join
-- (A.lazy: a seed is light, see below); a call whose resolutions are all taken and whose seeds
-- are whole never does. Else the graph must exist before the call writes anything (it is
-- published once per process; a lost one is published again: the 'nograph' refusal).
local function graph_missing(res)
  local may_read = A.lazy
  for i = 1, #res do
    if not res[i][2] then
      may_read = true
    end
  end
  return may_read and redis.call('EXISTS', K_GRAPH) == 0
end
local function node_of(i)
  return graph_record('n' .. fmt(i))
end
local function edge_of(e)
  return graph_record('e' .. fmt(e))
end
-- how many edges a node record's list holds (a light record holds the count itself)
local function count_of(list)
  if type(list) == 'number' then
    return list
  end
  return #list
end
-- the whole record of node i: a light seed (counts instead of the edge lists of a node with
-- many incoming edges) is replaced by the record in the graph hash
local function full_node(i)
  local rec = node_of(i)
  if type(rec[3]) == 'number' then
    local raw = redis.call('HGET', K_GRAPH, 'n' .. fmt(i))
    if not raw then
      error({err = 'flowcraft: graph record n' .. fmt(i) .. ' missing in ' .. K_GRAPH})
    end
    rec = cjson.decode(raw)
    GRAPH['n' .. fmt(i)] = rec
  end
  return rec
end
-- read the records of edges `list` not known yet with one HMGET
local function load_edges(list)
  local missing = {}
  for i = 1, #list do
    local f = 'e' .. fmt(list[i])
    if GRAPH[f] == nil and SEEDS[f] == nil then
      missing[#missing + 1] = f
    end
  end
  if #missing > 0 then
    local raw = call_sliced('HMGET', K_GRAPH, missing)
    for i = 1, #missing do
      if raw[i] then
        GRAPH[missing[i]] = cjson.decode(raw[i])
      end
    end
  end
end
