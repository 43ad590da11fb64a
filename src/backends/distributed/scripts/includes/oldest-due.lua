-- oldestDue(mboxKey, msgsKey, bufferMs): the due time of a mailbox, that is its oldest
-- pending message's storedAt + bufferMs, or nil when the mailbox is empty.
local function oldestDue(mboxKey, msgsKey, bufferMs)
  local first = redis.call('ZRANGE', mboxKey, 0, 0)
  if #first == 0 then return nil end
  local json = redis.call('HGET', msgsKey, first[1])
  local storedAt = 0
  if json then storedAt = tonumber(cjson.decode(json).storedAt) or 0 end
  return storedAt + tonumber(bufferMs)
end

-- nextDue(mboxKey, msgsKey, unsentKey, bufferMs, now, unsentRetryMs): when a session that is
-- not leased needs a worker: its mailbox's due time; else, if replies were left unsent (a
-- batch cut short), shortly (now + unsentRetryMs); else nil.
local function nextDue(mboxKey, msgsKey, unsentKey, bufferMs, now, unsentRetryMs)
  local due = oldestDue(mboxKey, msgsKey, bufferMs)
  if due == nil and redis.call('ZCARD', unsentKey) > 0 then
    due = tonumber(now) + tonumber(unsentRetryMs)
  end
  return due
end

-- schedule(schedKey, due, bufferMs): raise the session's scheduled flag. It expires on its own
-- a minute after the window, so a lost follow-up ZADD cannot block rescheduling for ever.
local function schedule(schedKey, due, bufferMs)
  redis.call('SET', schedKey, string.format('%d', due), 'PX', tonumber(bufferMs) + 60000)
end
