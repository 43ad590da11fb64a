--[[
  Liveness backstop, run by the reaper for each mailbox it finds: a session with pending
  messages and no lease is (re)flagged as scheduled, so the caller can put it back on the
  ready queue (with ZADD NX, so a scheduled or claimed entry is left alone).

  KEYS[1] lock    STRING token
  KEYS[2] mbox    ZSET message id by seq
  KEYS[3] msgs    HASH message id -> StoredMessage JSON
  KEYS[4] sched   the scheduled flag

  ARGV[1] buffer window, ms

  Returns
    0               nothing to do (leased, or mailbox empty)
    due > 0         the session needs a worker: ZADD NX the ready queue with this score
]]
-- @include oldest-due

if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local due = oldestDue(KEYS[2], KEYS[3], ARGV[1])
if due == nil then return 0 end
schedule(KEYS[4], due, ARGV[1])
return due
