--[[
  Grants the session's lease if it is free, with a fencing token strictly greater than
  every earlier grant's.

  Fences come in blocks reserved in PostgreSQL (table `fence_blocks`, which only grows).
  Redis hands out the numbers of the current block and remembers which Redis process
  (its run_id, the "epoch") adopted it. After a restart, a failover or lost keys, the epoch
  no longer matches, so the next grant needs a fresh block from PostgreSQL, which starts
  above every fence ever granted: a Redis that lost data cannot reuse a token.

  KEYS[1] lock    STRING token, PX ttl
  KEYS[2] fence   HASH n (last fence granted), ceil (end of block), epoch (run_id); its idle
                  TTL, if any, removed on grant
  KEYS[3] sched   the scheduled flag, cleared on grant
  KEYS[4] mbox    ZSET message id by seq        (the holder's first read, see ARGV[5])
  KEYS[5] msgs    HASH message id -> StoredMessage JSON
  KEYS[6] pv      the mailbox's stats version (read only)
  KEYS[7] state   HASH s = snapshot JSON, v = version (its idle TTL, if any, removed on grant)

  ARGV[1] token (random per grant)
  ARGV[2] ttl, ms
  ARGV[3] new block base ('' when the caller has no block): the block is base+1 .. ceiling
  ARGV[4] new block ceiling
  ARGV[5] most messages of the new holder's first read (0: no read)
  ARGV[6] the epoch the new block was reserved for ('' with no block): the epoch of the
          NeedFenceBlock answer that asked for it. A Redis that restarted or failed over in
          between (another run_id) does not adopt it, and asks again: meanwhile its own lifetime's
          first reservation may have raised the session's floor in PostgreSQL above that block,
          and every commit under it would be refused (outside test QA91-F1)

  Returns
    {fence}           granted (ARGV[5] = 0)
    {fence, version, count, oldest, s, v, message JSON...}
                      granted, with the first read: the mailbox's figures and messages as
                      pending-3 returns them, and the state's fields (nil when absent)
    {-2, pttl}        (Locked) another holder has it, for pttl more ms
    {-5, epoch, kept, version, revision}
                      (NeedFenceBlock) reserve a block in PostgreSQL and call again with it;
                      epoch is this Redis's run_id; kept is 1 when Redis still has the session's
                      fences of this lifetime (a block used up), 2 when they are an earlier
                      lifetime's (a restart or failover that kept data: its journal, still to be
                      copied, goes on, unless the data is older than PostgreSQL's, see
                      leases.ts), 0 when it has none (new, or lost: PostgreSQL is the truth, and
                      the reservation starts this lifetime's era); version and revision are the
                      state's (-1: none)
]]
-- @include mailbox-stats
-- @include mailbox-messages
-- @include holder-read

if redis.call('EXISTS', KEYS[1]) == 1 then
  return { -2, redis.call('PTTL', KEYS[1]) }
end

local epoch = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local cur = redis.call('HMGET', KEYS[2], 'n', 'ceil', 'epoch')
local n, ceil = tonumber(cur[1]), tonumber(cur[2])
local valid = n ~= nil and ceil ~= nil and cur[3] == epoch and n < ceil

if not valid then
  if ARGV[3] == '' or ARGV[6] ~= epoch then
    local kept = 0
    if n ~= nil then kept = cur[3] == epoch and 1 or 2 end
    local st = redis.call('HMGET', KEYS[7], 'v', 'r')
    return { -5, epoch, kept, tonumber(st[1] or '-1'), tonumber(st[2] or '-1') }
  end
  local base = tonumber(ARGV[3])
  if n == nil or cur[3] ~= epoch or base > n then n = base end
  ceil = tonumber(ARGV[4])
end

n = n + 1
redis.call('HSET', KEYS[2], 'n', string.format('%d', n), 'ceil', string.format('%d', ceil), 'epoch', epoch)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[3])
-- The holder's session does not expire under it (an idle session's keys have the idle TTL,
-- see session-idle-12.lua): its fences (a commit checks them) and its state, unless that is a
-- tombstone, which keeps its own.
redis.call('PERSIST', KEYS[2])
if redis.call('HEXISTS', KEYS[7], 's') == 1 then redis.call('PERSIST', KEYS[7]) end
local limit = tonumber(ARGV[5])
if limit == 0 then return { n } end
return holderRead(n, KEYS[4], KEYS[5], KEYS[6], KEYS[7], limit)
