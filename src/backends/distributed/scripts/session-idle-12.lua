--[[
  Lets an idle session's keys expire from Redis (PostgreSQL holds the session; `load` and
  lease acquisition reload it from there). Called after a lease is released and after a
  journal copy. A session is idle when nothing waits in its mailbox, no reply is unsent, its
  journal is fully copied to PostgreSQL and nobody holds its lease. Then its keys get the
  idle TTL (renewed by each call); otherwise the TTL is removed, so keys of a session at work
  never expire under it.

  KEYS[1]  lock      STRING token
  KEYS[2]  mbox      ZSET message id by seq
  KEYS[3]  unsent    ZSET outbound id by seq
  KEYS[4]  journal   LIST of entries for PostgreSQL
  KEYS[5]  state     HASH
  KEYS[6]  out       HASH
  KEYS[7]  outState  HASH
  KEYS[8]  outIndex  ZSET
  KEYS[9]  pmid      HASH
  KEYS[10] fence     HASH (gone, the next lease reserves a new block in PostgreSQL, above it)
  KEYS[11] pv        STRING the mailbox's stats version
  KEYS[12] seq       STRING the arrival counter

  The arrival counter (`seq`) expires with the rest: it only orders what waits in the mailbox,
  which is empty when the session is idle (the intake script removes its TTL as it stores a
  message, so messages waiting with no worker running keep numbering after those before them;
  consumed ones keep their `seq` in PostgreSQL only as a tie-break of equal storage times). The
  mailbox's stats version (`pv`) expires too, but never before ARGV[2]: the global stats
  remember an emptied mailbox's version that long (stats-pending-4.lua). A version starts
  again from the server's clock (mailbox-stats.lua), above the old one; the wait guards
  against a clock set back.

  ARGV[1]  idle TTL, ms
  ARGV[2]  shortest life of `pv` once idle, ms

  Returns
    1   idle: the keys expire in ARGV[1] ms
    0   at work: their TTL (if any) removed
   -7   (NotFound) no state in Redis: nothing to do
]]
if redis.call('EXISTS', KEYS[5]) == 0 then return -7 end
local busy = redis.call('EXISTS', KEYS[1]) == 1
  or redis.call('ZCARD', KEYS[2]) > 0
  or redis.call('ZCARD', KEYS[3]) > 0
  or redis.call('LLEN', KEYS[4]) > 0
-- A tombstone (state without a snapshot) keeps its own short TTL.
if redis.call('HEXISTS', KEYS[5], 's') == 0 then return 0 end
for _, i in ipairs({ 5, 6, 7, 8, 9, 10, 12 }) do
  if busy then
    redis.call('PERSIST', KEYS[i])
  else
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
  end
end
if busy then
  redis.call('PERSIST', KEYS[11])
  return 0
end
redis.call('PEXPIRE', KEYS[11], math.max(tonumber(ARGV[1]), tonumber(ARGV[2])))
return 1
