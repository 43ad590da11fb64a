-- mailboxStats(mboxKey, msgsKey, pvKey, bump): what the global stats know of one mailbox:
-- {version, pending count, oldest pending storedAt (0 when none)}. With bump, the version
-- is incremented first (the caller changed the mailbox). An idle session's version expires
-- (session-idle-12.lua): it then starts again from 1. The caller's caller posts it to
-- stats-pending-4.lua; the version orders posts that reach it out of order.
local function mailboxStats(mboxKey, msgsKey, pvKey, bump)
  local version
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
