--[[
  The global pending-message figures, kept from posts of each session's mailbox figures
  (returned by intake-7, commit-12 and pending-3), so that `stats` reads them in O(log n)
  instead of visiting every session. Those scripts run in the session's slot and this one in
  the stats slot (Redis Cluster), so posts arrive after the fact and possibly out of order:
  each carries the mailbox's version, and a post older than what is recorded is ignored.

  A session whose mailbox became empty keeps a tombstone (its version, count 0) for
  ARGV[1] ms, so a late, older post cannot bring it back; older tombstones are dropped a few
  at a time, and a thousand at a time by a call without posts (the reaper's, so that they do
  not outlive the traffic that made them).

  KEYS[1] oldest  ZSET session member -> oldest pending storedAt (sessions with pending messages)
  KEYS[2] counts  HASH session member -> "<version>:<pending count>"
  KEYS[3] depth   STRING total pending messages (sum of the counts)
  KEYS[4] tombs   ZSET session member -> when its count became 0, epoch ms

  ARGV[1] tombstone lifetime, ms
  ARGV[2] now, epoch ms
  then, per session: member, version, pending count, oldest pending storedAt

  Returns the number of posts applied.
]]
local now = tonumber(ARGV[2])
local applied = 0
for i = 3, #ARGV, 4 do
  local member = ARGV[i]
  local version, count, oldest = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), ARGV[i + 3]
  local cur = redis.call('HGET', KEYS[2], member)
  local curVersion, curCount = -1, 0
  if cur then
    local sep = string.find(cur, ':', 1, true)
    curVersion, curCount = tonumber(string.sub(cur, 1, sep - 1)), tonumber(string.sub(cur, sep + 1))
  end
  if version >= curVersion then
    applied = applied + 1
    if count ~= curCount then redis.call('INCRBY', KEYS[3], count - curCount) end
    redis.call('HSET', KEYS[2], member, string.format('%d:%d', version, count))
    if count > 0 then
      redis.call('ZADD', KEYS[1], oldest, member)
      redis.call('ZREM', KEYS[4], member)
    else
      redis.call('ZREM', KEYS[1], member)
      redis.call('ZADD', KEYS[4], now, member)
    end
  end
end

local limit = 100
if #ARGV == 2 then limit = 1000 end
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, limit)
for _, member in ipairs(expired) do
  redis.call('HDEL', KEYS[2], member)
  redis.call('ZREM', KEYS[4], member)
end
return applied
