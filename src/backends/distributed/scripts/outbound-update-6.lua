--[[
  Changes the mutable part of one outbound record (status, attempts, provider message id,
  last error), following the status rule below, and journals the new state for PostgreSQL.
  Used by the outbox (by record id) and by status webhooks (by provider message id).

  KEYS[1] out       HASH outbound id -> immutable record JSON
  KEYS[2] outState  HASH outbound id -> mutable part JSON
  KEYS[3] outIndex  ZSET outbound id by seq
  KEYS[4] unsent    ZSET outbound id by seq
  KEYS[5] pmid      HASH provider message id -> outbound id
  KEYS[6] journal   LIST of entries for PostgreSQL

  ARGV[1] 'id' or 'pmid': what ARGV[2] is
  ARGV[2] the outbound id, or the provider message id
  ARGV[3] new status ('' to keep)
  ARGV[4] attempts ('' to keep)
  ARGV[5] provider message id ('' to keep)
  ARGV[6] last error ('' to keep)
  ARGV[7] journal entry: JSON object without its closing brace ('' not to journal); this
          script appends "outboundId" and "state"

  Returns
    {1 if the status changed else 0, journal length, entry, outbound id, mutable part JSON}
    {-7}   (NotFound) no such record in Redis
]]
-- @include outbound-status

local id = ARGV[2]
if ARGV[1] == 'pmid' then id = redis.call('HGET', KEYS[5], ARGV[2]) end
if not id then return { -7 } end
local raw = redis.call('HGET', KEYS[2], id)
if not raw then return { -7 } end

local st = cjson.decode(raw)
local changed = 0
if ARGV[3] ~= '' and ARGV[3] ~= st.status and statusAllowed(st.status, ARGV[3]) then
  st.status = ARGV[3]
  changed = 1
end
if ARGV[4] ~= '' then st.attempts = tonumber(ARGV[4]) end
if ARGV[5] ~= '' then
  if type(st.providerMessageId) == 'string' and st.providerMessageId ~= ARGV[5] then
    redis.call('HDEL', KEYS[5], st.providerMessageId)
  end
  st.providerMessageId = ARGV[5]
  redis.call('HSET', KEYS[5], ARGV[5], id)
end
if ARGV[6] ~= '' then st.lastError = ARGV[6] end
st.rev = (tonumber(st.rev) or 0) + 1

local json = cjson.encode(st)
redis.call('HSET', KEYS[2], id, json)
local seq = redis.call('ZSCORE', KEYS[3], id)
if st.status == 'pending' or st.status == 'sending' then
  if seq then redis.call('ZADD', KEYS[4], seq, id) end
else
  redis.call('ZREM', KEYS[4], id)
end

local len, entry = 0, ''
if ARGV[7] ~= '' then
  entry = ARGV[7] .. ',"outboundId":' .. cjson.encode(id) .. ',"state":' .. json .. '}'
  len = redis.call('RPUSH', KEYS[6], entry)
end
return { changed, len, entry, id, json }
