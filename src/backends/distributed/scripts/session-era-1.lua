--[[
  Whether Redis has a session's fences, and which Redis lifetime (its run_id) answers: the
  intake log's restore starts the lifetime's era in PostgreSQL for a session Redis lost
  (sql/intake-log-floor.sql), as the session's first fence block reservation would (see
  lease-acquire-7.lua).

  KEYS[1] fence   HASH n, ceil, epoch

  Returns
    {kept, run_id}   kept 1 when the fences are there, else 0
]]
return { redis.call('EXISTS', KEYS[1]), string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') }
