--[[
  Changes the mutable part of one outbound record (status, attempts, provider message id,
  last error), following the status rule below, and journals the new state for PostgreSQL.
  Used by the outbox (by record id) and by status webhooks (by provider message id).

  A status webhook may arrive before the send it reports is recorded (WhatsApp can report
  `sent` or `failed` before the send's answer is back, and the outbox records the last reply
  of a turn with the lease's release). Such a status is parked in KEYS[7] under its provider
  message id, merged by the rule with any parked before it and stamped with the time it was
  first parked; recording that id on a record (ARGV[5]) applies it, by the same rule, and drops
  it. A parked status older than ARGV[8] ms is not applied, and a session parks at most
  MAX_PARKED (statuses of messages Baton never sent, from another tool on the number, are never
  claimed: the hash expires ARGV[8] ms after the last one parked).

  KEYS[1] out       HASH outbound id -> immutable record JSON
  KEYS[2] outState  HASH outbound id -> mutable part JSON
  KEYS[3] outIndex  ZSET outbound id by seq
  KEYS[4] unsent    ZSET outbound id by seq
  KEYS[5] pmid      HASH provider message id -> outbound id ('~' and the id: another copy's
                    id, known for the prompt it carried, never for statuses; see ARGV[11])
  KEYS[6] journal   LIST of entries for PostgreSQL
  KEYS[7] early     HASH provider message id -> parked status JSON {status, lastError?}

  ARGV[1] 'id' or 'pmid': what ARGV[2] is
  ARGV[2] the outbound id, or the provider message id
  ARGV[3] new status ('' to keep)
  ARGV[4] attempts ('' to keep)
  ARGV[5] provider message id ('' to keep)
  ARGV[6] last error ('' to keep)
  ARGV[7] journal entry: JSON object without its closing brace ('' not to journal); this
          script appends "outboundId" and "state"
  ARGV[8] how long a parked status lives, ms ('' neither to park nor to apply parked ones)
  ARGV[9] claim count to set (OutboundRecord.claims; '' or absent to keep)
  ARGV[10] the caller's clock, epoch ms, for the parked statuses' ages ('' or absent: Redis's)
  ARGV[11] with 'pmid': the status's biz_opaque_callback_data ('' or absent if none). A provider
          id no record has, whose callback data names one of the session's ARGV[12] newest
          records (unique per user), is another copy of that record: a holder killed after its
          send went out and before recording it, the record then sent again. The id is kept as
          the record's alias (state `aliases`, journaled) so that a button on that copy still
          reads as the prompt's; the status itself is parked like any other.
  ARGV[12] how many of the newest records ARGV[11] is matched against
  ARGV[13] with 'id': OutboundRecord.notBefore to set, epoch ms ('' or absent to keep)

  Returns
    {1 if the status changed else 0, journal length, entry, outbound id, mutable part JSON}
    {-7, learnt, journal length, entry}   (NotFound) no such record in Redis (with ARGV[8], the
           status is parked); learnt is 1 when the id was kept as an alias (ARGV[11])
]]
-- @include outbound-status

local MAX_PARKED = 100
local MAX_ALIASES = 4

local function nowMs()
  if ARGV[10] and ARGV[10] ~= '' then return tonumber(ARGV[10]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function park()
  if ARGV[1] ~= 'pmid' or ARGV[8] == '' or ARGV[3] == '' then return end
  local prev = redis.call('HGET', KEYS[7], ARGV[2])
  if not prev and redis.call('HLEN', KEYS[7]) >= MAX_PARKED then return end
  local p = prev and cjson.decode(prev) or { status = ARGV[3], at = nowMs() }
  if statusAllowed(p.status, ARGV[3]) then p.status = ARGV[3] end
  if ARGV[6] ~= '' then p.lastError = ARGV[6] end
  redis.call('HSET', KEYS[7], ARGV[2], cjson.encode(p))
  redis.call('PEXPIRE', KEYS[7], ARGV[8])
end

local function journal(id, json)
  if ARGV[7] == '' then return 0, '' end
  local entry = ARGV[7] .. ',"outboundId":' .. cjson.encode(id) .. ',"state":' .. json .. '}'
  return redis.call('RPUSH', KEYS[6], entry), entry
end

-- Keeps ARGV[2] as an alias of the record its callback data names, if any (see ARGV[11]).
local function learnAlias()
  local data = ARGV[11]
  if ARGV[1] ~= 'pmid' or not data or string.sub(data, 1, 6) ~= 'baton:' then return 0, 0, '' end
  for _, oid in ipairs(redis.call('ZREVRANGE', KEYS[3], 0, tonumber(ARGV[12]) - 1)) do
    local rec = redis.call('HGET', KEYS[1], oid)
    if rec and cjson.decode(rec).callbackData == data then
      local raw = redis.call('HGET', KEYS[2], oid)
      if not raw then return 0, 0, '' end
      local st = cjson.decode(raw)
      local aliases = type(st.aliases) == 'table' and st.aliases or {}
      for _, a in ipairs(aliases) do
        if a == ARGV[2] then return 0, 0, '' end
      end
      if #aliases >= MAX_ALIASES then return 0, 0, '' end
      aliases[#aliases + 1] = ARGV[2]
      st.aliases = aliases
      st.rev = (tonumber(st.rev) or 0) + 1
      local json = cjson.encode(st)
      redis.call('HSET', KEYS[2], oid, json)
      redis.call('HSET', KEYS[5], ARGV[2], '~' .. oid)
      local len, entry = journal(oid, json)
      return 1, len, entry
    end
  end
  return 0, 0, ''
end

local function notFound()
  local learnt, len, entry = learnAlias()
  park()
  return { -7, learnt, len, entry }
end

local id = ARGV[2]
if ARGV[1] == 'pmid' then
  id = redis.call('HGET', KEYS[5], ARGV[2])
  -- another copy's id: its statuses are about that copy, not about the send recorded
  if id and string.sub(id, 1, 1) == '~' then id = nil end
end
if not id then return notFound() end
local raw = redis.call('HGET', KEYS[2], id)
if not raw then return notFound() end

local st = cjson.decode(raw)
local before = st.status
local changed = 0
-- An agent's reset marked this reply failed while its send was on its way; the provider took it
-- (this is the outbox recording that send, with its id): it was sent. The same exception as
-- sentDespiteReset in src/model/message.ts, whose texts these are (RESET_CANCELLED_PREFIX, 37
-- characters, begins every reason a reset cancelled with).
if ARGV[1] == 'id' and ARGV[3] == 'sent' and ARGV[5] ~= '' and st.status == 'failed'
    and type(st.providerMessageId) ~= 'string'
    and type(st.lastError) == 'string'
    and string.sub(st.lastError, 1, 37) == 'cancelled: an agent reset the session' then
  st.status = 'sent'
  st.lastError = 'sent: it was on its way when an agent reset the session'
  changed = 1
end
if ARGV[3] ~= '' and ARGV[3] ~= st.status and statusAllowed(st.status, ARGV[3]) then
  st.status = ARGV[3]
  changed = 1
end
if ARGV[4] ~= '' then st.attempts = tonumber(ARGV[4]) end
if ARGV[9] and ARGV[9] ~= '' then st.claims = tonumber(ARGV[9]) end
if ARGV[5] ~= '' then
  -- The id of the send that counts: a send recorded while the record still waited. A second
  -- send recorded after one already was (a holder that lost its lease, its send slow) keeps the
  -- first id; both ids name the record, so either one's status webhooks apply.
  local recorded = type(st.providerMessageId) == 'string' and st.providerMessageId ~= ARGV[5]
  local waiting = before == 'pending' or before == 'sending'
  if recorded and waiting then redis.call('HDEL', KEYS[5], st.providerMessageId) end
  if not recorded or waiting then st.providerMessageId = ARGV[5] end
  redis.call('HSET', KEYS[5], ARGV[5], id)
  -- A status that came before this send was recorded made its id an alias: it is the send's own.
  if type(st.aliases) == 'table' then
    local kept = {}
    for _, a in ipairs(st.aliases) do
      if a ~= ARGV[5] then kept[#kept + 1] = a end
    end
    st.aliases = #kept > 0 and kept or nil
  end
end
if ARGV[6] ~= '' then st.lastError = ARGV[6] end
if ARGV[13] and ARGV[13] ~= '' then st.notBefore = tonumber(ARGV[13]) end
if ARGV[5] ~= '' and ARGV[8] ~= '' then
  local parked = redis.call('HGET', KEYS[7], ARGV[5])
  if parked then redis.call('HDEL', KEYS[7], ARGV[5]) end
  local p = parked and cjson.decode(parked)
  if p and nowMs() - (tonumber(p.at) or 0) <= tonumber(ARGV[8]) then
    if p.status ~= st.status and statusAllowed(st.status, p.status) then
      st.status = p.status
      changed = 1
    end
    if p.lastError then st.lastError = p.lastError end
  end
end
st.rev = (tonumber(st.rev) or 0) + 1

local json = cjson.encode(st)
redis.call('HSET', KEYS[2], id, json)
local seq = redis.call('ZSCORE', KEYS[3], id)
if st.status == 'pending' or st.status == 'sending' then
  if seq then redis.call('ZADD', KEYS[4], seq, id) end
else
  redis.call('ZREM', KEYS[4], id)
end

local len, entry = journal(id, json)
return { changed, len, entry, id, json }
