--[[
  The first messages of a mailbox, in seq order.

  KEYS[1] mbox    ZSET message id by seq
  KEYS[2] msgs    HASH message id -> StoredMessage JSON

  ARGV[1] limit

  Returns the StoredMessage JSON strings, oldest first.
]]
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)) do
  local json = redis.call('HGET', KEYS[2], id)
  if json then out[#out + 1] = json end
end
return out
