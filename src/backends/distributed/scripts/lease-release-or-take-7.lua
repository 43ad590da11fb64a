--[[
  Ends a lease holder's turn in one step: if messages are already due (the user answered the
  reply just sent, or wrote again during the batch), the holder keeps the lease and gets them
  with the state, as pending-3 and an HMGET would give them; otherwise the lease is released
  exactly as lease-release-5.lua does (reschedule if messages wait or replies were left unsent).
  So a turn needs no separate "anything more?" read before its release.

  KEYS[1] lock    STRING token
  KEYS[2] mbox    ZSET message id by seq
  KEYS[3] msgs    HASH message id -> StoredMessage JSON
  KEYS[4] sched   the scheduled flag
  KEYS[5] unsent  ZSET outbound id by seq
  KEYS[6] pv      the mailbox's stats version (read only)
  KEYS[7] state   HASH s = snapshot JSON, v = version

  ARGV[1] token
  ARGV[2] buffer window, ms
  ARGV[3] now, epoch ms
  ARGV[4] delay before unsent replies are taken up again, ms
  ARGV[5] most messages to return when kept

  Returns
    {-3}                     (Fenced) the token no longer holds the lease: nothing changed
    {0}                      released; nothing waits
    {0, due}                 released and scheduled: ZADD the ready queue with this score
    {1, version, count, oldest, s, v, message JSON...}
                             kept: the mailbox's figures (as pending-3), the state's fields
                             (nil when absent), then the due messages' StoredMessage JSON, oldest
                             first
]]
-- @include oldest-due
-- @include mailbox-stats
-- @include mailbox-messages
-- @include holder-read

if redis.call('GET', KEYS[1]) ~= ARGV[1] then return { -3 } end
local due = oldestDue(KEYS[2], KEYS[3], ARGV[2])
if due ~= nil and due <= tonumber(ARGV[3]) then
  return holderRead(1, KEYS[2], KEYS[3], KEYS[6], KEYS[7], tonumber(ARGV[5]))
end
redis.call('DEL', KEYS[1])
due = nextDue(KEYS[2], KEYS[3], KEYS[5], ARGV[2], ARGV[3], ARGV[4])
if due == nil then return { 0 } end
schedule(KEYS[4], due, ARGV[2])
return { 0, due }
