--[[
  Extends a lease its holder still has (compare token, then PEXPIRE).

  KEYS[1] lock    STRING token

  ARGV[1] token
  ARGV[2] ttl, ms

  Returns
     1              extended
    -3 (Fenced)     the token no longer holds the lease
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -3 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
