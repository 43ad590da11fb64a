-- appendMessages(out, mboxKey, msgsKey, limit): appends the StoredMessage JSON of the mailbox's
-- first `limit` messages to `out`, oldest first, and returns `out`.
local function appendMessages(out, mboxKey, msgsKey, limit)
  for _, id in ipairs(redis.call('ZRANGE', mboxKey, 0, limit - 1)) do
    local json = redis.call('HGET', msgsKey, id)
    if json then out[#out + 1] = json end
  end
  return out
end
