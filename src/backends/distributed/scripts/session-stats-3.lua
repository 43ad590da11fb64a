--[[
  What `stats` needs to know about one live session.

  KEYS[1] mbox    ZSET message id by seq
  KEYS[2] msgs    HASH message id -> StoredMessage JSON
  KEYS[3] lock    STRING token

  Returns {pending messages, oldest pending storedAt (0 when none), 1 if leased else 0}
]]
-- @include oldest-due

local count = redis.call('ZCARD', KEYS[1])
local oldest = 0
if count > 0 then oldest = oldestDue(KEYS[1], KEYS[2], 0) end
return { count, oldest, redis.call('EXISTS', KEYS[3]) }
