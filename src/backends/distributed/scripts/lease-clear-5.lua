--[[
  An agent's hand: drops whatever lease the session has, whoever holds it, and reschedules
  the session if messages are waiting or replies were left unsent.

  KEYS[1] lock    STRING token
  KEYS[2] mbox    ZSET message id by seq
  KEYS[3] msgs    HASH message id -> StoredMessage JSON
  KEYS[4] sched   the scheduled flag
  KEYS[5] unsent  ZSET outbound id by seq

  ARGV[1] buffer window, ms
  ARGV[2] now, epoch ms
  ARGV[3] delay before unsent replies are taken up again, ms

  Returns
    -7 (NotFound)   there was no lease
     0              cleared; nothing waits
    due > 0         cleared and scheduled: ZADD the ready queue with this score
]]
-- @include oldest-due

if redis.call('DEL', KEYS[1]) == 0 then return -7 end
local due = nextDue(KEYS[2], KEYS[3], KEYS[5], ARGV[1], ARGV[2], ARGV[3])
if due == nil then return 0 end
schedule(KEYS[4], due, ARGV[1])
return due
