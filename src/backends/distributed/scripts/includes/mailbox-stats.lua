-- mailboxStats(mboxKey, msgsKey, pvKey, bump, seedTtl): what the global stats know of one
-- mailbox: {version, pending count, oldest pending storedAt (0 when none)}. With bump, the
-- version is incremented first (the caller changed the mailbox).
--
-- A version that is absent (a mailbox never seen, one idle long enough for its version to
-- expire (session-idle-12.lua), or one a Redis restart lost while the global stats, in another
-- slot of a cluster, kept its figures) starts from the server's clock in microseconds: above
-- every version an earlier life of the mailbox posted, which the stats may still hold and
-- would otherwise prefer to this life's posts (stats-pending-4.lua keeps the newest version).
-- A bump seeds it for good; a read seeds it only when given seedTtl (ms), and then lets it
-- expire unless a bump comes first (the stall check's repair of figures nobody else posts).
-- The caller's caller posts the figures to stats-pending-4.lua.
local function mailboxStats(mboxKey, msgsKey, pvKey, bump, seedTtl)
  local version
  if bump or seedTtl then
    if redis.call('EXISTS', pvKey) == 0 then
      local t = redis.call('TIME')
      redis.call('SET', pvKey, t[1] .. string.format('%06d', tonumber(t[2])))
      if not bump then redis.call('PEXPIRE', pvKey, seedTtl) end
    end
  end
  if bump then
    version = redis.call('INCR', pvKey)
    redis.call('PERSIST', pvKey) -- a mailbox at work keeps its version
  else
    version = tonumber(redis.call('GET', pvKey)) or 0
  end
  local count = redis.call('ZCARD', mboxKey)
  local oldest = 0
  if count > 0 then
    local first = redis.call('ZRANGE', mboxKey, 0, 0)
    local json = redis.call('HGET', msgsKey, first[1])
    if json then oldest = tonumber(cjson.decode(json).storedAt) or 0 end
  end
  return { version, count, oldest }
end
