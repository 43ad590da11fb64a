--[[
  Claims the most overdue session of the ready queue for one caller. The entry is not
  removed but pushed to a visibility score: if the caller dies before taking the lease, the
  session becomes due again then. Taking the lease turns the entry into the lease's
  watchdog; releasing it removes or reschedules it.

  KEYS[1] ready   ZSET session member by due time

  ARGV[1] now, epoch ms
  ARGV[2] visibility score to give the claimed entry (now + claim timeout, fractional)

  Returns
    {member, due score}   claimed
    {'', earliest score}  nothing due; the earliest score ('' when the queue is empty)
]]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, 1)
if #due > 0 then
  redis.call('ZADD', KEYS[1], ARGV[2], due[1])
  return { due[1], due[2] }
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then return { '', '' } end
return { '', first[2] }
