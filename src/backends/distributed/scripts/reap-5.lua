--[[
  Liveness backstop, run at start and by the periodic reaper for each session it finds with
  a mailbox or unsent replies: one that has no lease is (re)flagged as scheduled, so the
  caller can put it back on the ready queue (with ZADD NX, so a scheduled, claimed or
  watchdog entry is left alone).

  KEYS[1] lock    STRING token
  KEYS[2] mbox    ZSET message id by seq
  KEYS[3] msgs    HASH message id -> StoredMessage JSON
  KEYS[4] sched   the scheduled flag
  KEYS[5] unsent  ZSET outbound id by seq

  ARGV[1] buffer window, ms
  ARGV[2] now, epoch ms
  ARGV[3] delay before unsent replies are taken up again, ms

  Returns
    0               nothing to do (leased, or nothing waits)
    due > 0         the session needs a worker: ZADD NX the ready queue with this score
]]
-- @include oldest-due

if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local due = nextDue(KEYS[2], KEYS[3], KEYS[5], ARGV[1], ARGV[2], ARGV[3])
if due == nil then return 0 end
schedule(KEYS[4], due, ARGV[1])
return due
