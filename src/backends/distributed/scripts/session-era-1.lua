--[[
  Whether Redis has a session's fences, and which Redis lifetime (its run_id) answers: the
  intake log's restore starts the lifetime's era in PostgreSQL for a session Redis lost
  (sql/intake-log-floor.sql), as the session's first fence block reservation would (see
  lease-acquire-7.lua). The lifetime's age tells the restore whether this Redis was up when a
  message missing from it was logged.

  KEYS[1] fence   HASH n, ceil, epoch

  Returns
    {kept, run_id, uptime}   kept 1 when the fences are there, else 0; uptime in seconds
]]
local server = redis.call('INFO', 'server')
return {
  redis.call('EXISTS', KEYS[1]),
  string.match(server, 'run_id:(%x+)'),
  tonumber(string.match(server, 'uptime_in_seconds:(%d+)')),
}
