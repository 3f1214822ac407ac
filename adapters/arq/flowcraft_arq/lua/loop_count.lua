-- loop_count: how many times loop controller n continued for the loop entry of iteration it.
-- A: {n, it}
return tonumber(getf('n:' .. ikey(A.n, entry_of(A.n, A.it))) or '0')
