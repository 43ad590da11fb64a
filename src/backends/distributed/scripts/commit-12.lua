--[[
  Commits one batch atomically: checks the lease (token and fence) and the version, then
  writes the snapshot, the new outbound records, removes the consumed messages from the
  mailbox, and appends the batch to the session's journal (the copy PostgreSQL receives,
  through the group committer or the write-behind flusher).

  KEYS[1]  lock      STRING token
  KEYS[2]  fence     HASH n = last fence granted
  KEYS[3]  state     HASH v version, r revision, f fence, s snapshot JSON
  KEYS[4]  mbox      ZSET message id by seq
  KEYS[5]  msgs      HASH message id -> StoredMessage JSON
  KEYS[6]  out       HASH outbound id -> immutable record JSON
  KEYS[7]  outState  HASH outbound id -> mutable part JSON
  KEYS[8]  outIndex  ZSET outbound id by seq (records kept in Redis)
  KEYS[9]  unsent    ZSET outbound id by seq (pending or sending)
  KEYS[10] pmid      HASH provider message id -> outbound id
  KEYS[11] journal   LIST of entries for PostgreSQL
  KEYS[12] pv        the mailbox's stats version (INCR when messages are consumed)

  ARGV[1]  lease token
  ARGV[2]  lease fence
  ARGV[3]  expected version
  ARGV[4]  new version
  ARGV[5]  snapshot JSON
  ARGV[6]  journal entry: JSON object without its closing brace; this script appends
           "rev" and "messages" (the consumed messages as stored)
  ARGV[7]  how many outbound records to keep in Redis per session (older sent ones are
           dropped; PostgreSQL keeps them all)
  ARGV[8]  how many entries of the journal's head to return (0: none), for a write-through
           copy to PostgreSQL that then need not read them
  ARGV[9]  c = number of consumed message ids, then c ids
  then     o = number of outbound records, then per record: id, seq, record JSON,
           mutable part JSON, '1' if unsent else '0'

  Returns
    {0, journal length, version, pending count, oldest pending storedAt, n, entry x n,
     record JSON, mutable part JSON, ...}
                                       committed; then the mailbox's figures for the global
                                       stats (see stats-pending-4.lua), the first ARGV[8] (at
                                       most) journal entries, oldest first, and the session's
                                       unsent replies in seq order, as outbound-read-4 'unsent'
                                       returns them (the holder sends them next)
    {-3}                               (Fenced) the token or fence no longer holds the lease
    {-4, stored version}               (VersionConflict)
    {-6}                               (NeedLoad) no state in Redis: load from PostgreSQL, retry
]]
-- @include mailbox-stats

if redis.call('GET', KEYS[1]) ~= ARGV[1] then return { -3 } end
if redis.call('HGET', KEYS[2], 'n') ~= ARGV[2] then return { -3 } end
if redis.call('EXISTS', KEYS[3]) == 0 then return { -6 } end
local stored = tonumber(redis.call('HGET', KEYS[3], 'v')) or 0
if stored ~= tonumber(ARGV[3]) then return { -4, stored } end

local rev = redis.call('HINCRBY', KEYS[3], 'r', 1)
redis.call('HSET', KEYS[3], 'v', ARGV[4], 'f', ARGV[2], 's', ARGV[5])
-- A session at work keeps its keys: an idle session's got the idle TTL (session-idle-12.lua),
-- which may be seconds, and a write to a key keeps its TTL. The outbox's unsent index has none:
-- its hashes must not expire under it while a record waits to be sent or run.
for _, k in ipairs({ 3, 6, 7, 8, 10 }) do redis.call('PERSIST', KEYS[k]) end

local i = 9
local consumedCount = tonumber(ARGV[i])
local messages = {}
for j = 1, consumedCount do
  local id = ARGV[i + j]
  local m = redis.call('HGET', KEYS[5], id)
  if m then
    messages[#messages + 1] = m
    redis.call('HDEL', KEYS[5], id)
  end
  redis.call('ZREM', KEYS[4], id)
end
i = i + consumedCount + 1

local outCount = tonumber(ARGV[i])
for j = 0, outCount - 1 do
  local b = i + 1 + j * 5
  local id, seq = ARGV[b], ARGV[b + 1]
  redis.call('HSET', KEYS[6], id, ARGV[b + 2])
  redis.call('HSET', KEYS[7], id, ARGV[b + 3])
  redis.call('ZADD', KEYS[8], seq, id)
  if ARGV[b + 4] == '1' then redis.call('ZADD', KEYS[9], seq, id) end
end

-- Keep Redis bounded: drop the oldest records that are no longer unsent.
local keep = tonumber(ARGV[7])
local total = redis.call('ZCARD', KEYS[8])
if total > keep then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[8], 0, total - keep - 1)) do
    if not redis.call('ZSCORE', KEYS[9], id) then
      local st = redis.call('HGET', KEYS[7], id)
      if st then
        local s = cjson.decode(st)
        if type(s.providerMessageId) == 'string' then redis.call('HDEL', KEYS[10], s.providerMessageId) end
        if type(s.aliases) == 'table' then
          for _, a in ipairs(s.aliases) do redis.call('HDEL', KEYS[10], a) end
        end
      end
      redis.call('HDEL', KEYS[6], id)
      redis.call('HDEL', KEYS[7], id)
      redis.call('ZREM', KEYS[8], id)
    end
  end
end

local entry = ARGV[6] .. ',"rev":' .. rev .. ',"messages":[' .. table.concat(messages, ',') .. ']}'
local length = redis.call('RPUSH', KEYS[11], entry)
local st = mailboxStats(KEYS[4], KEYS[5], KEYS[12], consumedCount > 0)
local out = { 0, length, st[1], st[2], st[3], 0 }
local page = tonumber(ARGV[8])
if page > 0 then
  local head = redis.call('LRANGE', KEYS[11], 0, page - 1)
  out[6] = #head
  for _, e in ipairs(head) do out[#out + 1] = e end
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[9], 0, -1)) do
  out[#out + 1] = redis.call('HGET', KEYS[6], id) or ''
  out[#out + 1] = redis.call('HGET', KEYS[7], id) or ''
end
return out
