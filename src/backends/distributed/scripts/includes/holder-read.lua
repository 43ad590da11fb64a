-- holderRead(code, mboxKey, msgsKey, pvKey, stateKey, limit): what a lease holder reads to start
-- a batch, behind `code`: {code, version, pending count, oldest pending storedAt, s, v,
-- message JSON...}: the mailbox's figures (as pending-3.lua returns them), the state's fields
-- (false when absent), then the first `limit` messages' StoredMessage JSON, oldest first.
-- The script includes mailbox-stats and mailbox-messages before this.
local function holderRead(code, mboxKey, msgsKey, pvKey, stateKey, limit)
  local st = mailboxStats(mboxKey, msgsKey, pvKey, false)
  local state = redis.call('HMGET', stateKey, 's', 'v')
  return appendMessages({ code, st[1], st[2], st[3], state[1], state[2] }, mboxKey, msgsKey, limit)
end
