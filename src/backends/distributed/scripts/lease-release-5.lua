--[[
  Releases a lease its holder still has (compare token, then DEL) and, in the same step,
  reschedules the session if messages are waiting (so one that arrived during the lease
  cannot be forgotten: the lost wake-up of lock-then-check designs), or, failing that, if
  replies were left unsent.

  KEYS[1] lock    STRING token
  KEYS[2] mbox    ZSET message id by seq
  KEYS[3] msgs    HASH message id -> StoredMessage JSON
  KEYS[4] sched   the scheduled flag
  KEYS[5] unsent  ZSET outbound id by seq

  ARGV[1] token
  ARGV[2] buffer window, ms
  ARGV[3] now, epoch ms
  ARGV[4] delay before unsent replies are taken up again, ms
  ARGV[5] the session is not due before now + this, ms ('' or absent: 0; a holder yielding to
          an agent leaves it time to take the baton)

  Returns
    -3 (Fenced)     the token no longer holds the lease: nothing changed
     0              released; nothing waits
    due > 0         released and scheduled: ZADD the ready queue with this score
]]
-- @include oldest-due

if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -3 end
redis.call('DEL', KEYS[1])
local due = nextDue(KEYS[2], KEYS[3], KEYS[5], ARGV[2], ARGV[3], ARGV[4])
if due == nil then return 0 end
local notBefore = tonumber(ARGV[3]) + (tonumber(ARGV[5] or '') or 0)
if due < notBefore then due = notBefore end
schedule(KEYS[4], due, ARGV[2])
return due
