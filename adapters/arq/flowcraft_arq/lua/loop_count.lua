-- loop_count: how many times loop controller n continued for the loop entry of iteration it.
-- A: {n, it}
return tonumber(getf('n:' .. ikey(A.n, parent_of(A.it))) or '0')
