--[[
  Compare-and-set of one ready-queue entry: changes it only if its score is still the one
  the caller set (a claim or a watchdog), so an entry rescheduled meanwhile by someone else
  is left alone.

  KEYS[1] ready   ZSET session member by due time

  ARGV[1] member
  ARGV[2] expected score
  ARGV[3] new score ('' to remove the entry)

  Returns
    1   changed
    0   the entry is gone or has another score: nothing changed
]]
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur or tonumber(cur) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
