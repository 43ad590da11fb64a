--[[
  Stores one inbound message: dedupe by id, append to the session's mailbox, and raise the
  session's scheduled flag if it is neither scheduled nor leased.

  On a single node the ready queue comes as KEYS[8], and a session this script schedules enters
  it here, atomically: a process killed (or paused) right after the intake cannot leave the
  session flagged as scheduled yet absent from the queue. On a Redis Cluster the queue lives in
  another slot: when the script returns a due time, the caller adds the session to the ready
  queue right after (same webhook, second pipelined round trip); if the caller dies in between,
  the flag expires on its own and the reaper reschedules sessions with pending messages.

  KEYS[1] seen    dedupe marker of this message id (STRING, EX dedupe TTL)
  KEYS[2] mbox    ZSET message id by seq
  KEYS[3] msgs    HASH message id -> StoredMessage JSON
  KEYS[4] seq     per-session arrival counter
  KEYS[5] lock    the session's lease
  KEYS[6] sched   the session's scheduled flag
  KEYS[7] pv      the mailbox's stats version (INCR on every change)
  KEYS[8] ready   the ready queue (ZSET session member by due time), single node only

  ARGV[1] message id
  ARGV[2] StoredMessage JSON without `seq` and without its closing brace
  ARGV[3] dedupe TTL, seconds
  ARGV[4] buffer window, ms
  ARGV[5] '1' to skip the dedupe check (dead-letter replay), else '0'
  ARGV[6] the session's member in the ready queue (with KEYS[8])

  Returns {code, version, pending count, oldest pending storedAt}, code being
    -1 (Duplicate)  already seen within the dedupe TTL, or already in the mailbox: no change
                    (and no other fields)
     0              stored; the session was already scheduled or is leased
    due > 0         stored and newly scheduled: in the ready queue with this score (KEYS[8]),
                    or for the caller to ZADD there
  The other three are the mailbox's figures for the global stats (see stats-pending-4.lua).
]]
-- @include oldest-due
-- @include mailbox-stats

local id = ARGV[1]
if ARGV[5] == '1' then
  if redis.call('HEXISTS', KEYS[3], id) == 1 then return { -1 } end
  redis.call('SET', KEYS[1], '1', 'EX', ARGV[3])
elseif not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then
  return { -1 }
end

local seq = redis.call('INCR', KEYS[4])
-- An idle session's counter expires (session-idle-12.lua); one with a message waiting must not.
redis.call('PERSIST', KEYS[4])
redis.call('HSET', KEYS[3], id, ARGV[2] .. ',"seq":' .. seq .. '}')
redis.call('ZADD', KEYS[2], seq, id)
local st = mailboxStats(KEYS[2], KEYS[3], KEYS[7], true)

if redis.call('EXISTS', KEYS[5]) == 1 or redis.call('EXISTS', KEYS[6]) == 1 then
  return { 0, st[1], st[2], st[3] }
end
local due = oldestDue(KEYS[2], KEYS[3], ARGV[4])
schedule(KEYS[6], due, ARGV[4])
if KEYS[8] then redis.call('ZADD', KEYS[8], due, ARGV[6]) end
return { due, st[1], st[2], st[3] }
