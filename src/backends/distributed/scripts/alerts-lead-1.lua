--[[
  One process at a time evaluates the queue alerts (so an episode is announced once, not once per
  process): takes the alerting lead when nobody holds it, or extends it when the caller does.

  KEYS[1] leader  STRING process id

  ARGV[1] process id
  ARGV[2] ttl, ms

  Returns
    1  the caller leads (until ttl from now)
    0  another process does
]]
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
