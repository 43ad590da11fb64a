--[[
  Puts one outbound record read from PostgreSQL back into Redis (dead-letter replay of a
  record Redis no longer keeps), unless Redis has it.

  KEYS[1] out       HASH outbound id -> immutable record JSON
  KEYS[2] outState  HASH outbound id -> mutable part JSON
  KEYS[3] outIndex  ZSET outbound id by seq
  KEYS[4] unsent    ZSET outbound id by seq

  ARGV[1] outbound id
  ARGV[2] seq
  ARGV[3] record JSON
  ARGV[4] mutable part JSON
  ARGV[5] '1' if unsent else '0'

  Returns
    1   restored
    0   Redis already had it
]]
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
if ARGV[5] == '1' then redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1]) end
return 1
