--[[
  An agent's hand: drops whatever lease the session has, whoever holds it, marks the session as
  cleared (when, and from whom: the dropped token's holder), and reschedules the session if
  messages are waiting or replies were left unsent. The mark is set with the drop, so a next
  holder that sees the lease gone always sees whom it was taken from.

  KEYS[1] lock     STRING token "<fence>~<holder>"
  KEYS[2] mbox     ZSET message id by seq
  KEYS[3] msgs     HASH message id -> StoredMessage JSON
  KEYS[4] sched    the scheduled flag
  KEYS[5] unsent   ZSET outbound id by seq
  KEYS[6] cleared  STRING "<epoch ms>[ <holder>]"

  ARGV[1] buffer window, ms
  ARGV[2] now, epoch ms
  ARGV[3] delay before unsent replies are taken up again, ms
  ARGV[4] how long the cleared mark is kept, ms

  Returns {code, token}
    code -7 (NotFound)   there was no lease (marked all the same: whoever held one last may be
                         paused past its expiry); token false
    code 0               cleared; nothing waits
    code due > 0         cleared and scheduled: ZADD the ready queue with this score
]]
-- @include oldest-due

local token = redis.call('GET', KEYS[1])
if not token then
  redis.call('SET', KEYS[6], ARGV[2], 'PX', ARGV[4])
  return { -7, false }
end
local tilde = string.find(token, '~', 1, true)
local mark = ARGV[2]
if tilde then mark = mark .. ' ' .. string.sub(token, tilde + 1) end
redis.call('SET', KEYS[6], mark, 'PX', ARGV[4])
redis.call('DEL', KEYS[1])
local due = nextDue(KEYS[2], KEYS[3], KEYS[5], ARGV[1], ARGV[2], ARGV[3])
if due == nil then return { 0, token } end
schedule(KEYS[4], due, ARGV[1])
return { due, token }
