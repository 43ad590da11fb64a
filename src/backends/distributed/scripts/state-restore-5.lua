--[[
  Puts a session read from PostgreSQL back into Redis, unless Redis has it already (a
  concurrent load or commit won). A session PostgreSQL does not know either is stored as a
  tombstone (version 0, no snapshot) that expires, so `commit` can tell "new session" from
  "not loaded".

  KEYS[1] state     HASH v, r, f, s
  KEYS[2] out       HASH outbound id -> immutable record JSON
  KEYS[3] outState  HASH outbound id -> mutable part JSON
  KEYS[4] outIndex  ZSET outbound id by seq
  KEYS[5] unsent    ZSET outbound id by seq

  ARGV[1] version ('' for a tombstone)
  ARGV[2] revision
  ARGV[3] fence of the last commit
  ARGV[4] snapshot JSON
  ARGV[5] tombstone TTL, seconds
  ARGV[6] o = number of outbound records, then per record: id, seq, record JSON,
          mutable part JSON, '1' if unsent else '0'

  Returns
    1   restored
    0   Redis already had the session: nothing changed
]]
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[1] == '' then
  redis.call('HSET', KEYS[1], 'v', '0', 'r', '0', 'f', '0')
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return 1
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'r', ARGV[2], 'f', ARGV[3], 's', ARGV[4])
local outCount = tonumber(ARGV[6])
for j = 0, outCount - 1 do
  local b = 7 + j * 5
  local id, seq = ARGV[b], ARGV[b + 1]
  if redis.call('HEXISTS', KEYS[3], id) == 0 then
    redis.call('HSET', KEYS[2], id, ARGV[b + 2])
    redis.call('HSET', KEYS[3], id, ARGV[b + 3])
    redis.call('ZADD', KEYS[4], seq, id)
    if ARGV[b + 4] == '1' then redis.call('ZADD', KEYS[5], seq, id) end
  end
end
return 1
