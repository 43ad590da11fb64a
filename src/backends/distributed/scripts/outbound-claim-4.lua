--[[
  Claims (or gives back) send attempts of a session's unsent outbound records, fenced: each
  claim is made before the attempt it covers, so `claims` counts the attempts that may have
  reached the user (OutboundRecord.claims; a commit writes 1). Journals each new state for
  PostgreSQL, as outbound-update-7.lua does.

  KEYS[1] lock      STRING token
  KEYS[2] fence     HASH n = last fence granted
  KEYS[3] outState  HASH outbound id -> mutable part JSON
  KEYS[4] journal   LIST of entries for PostgreSQL

  ARGV[1] lease token
  ARGV[2] lease fence
  ARGV[3] delta: 1 (claim) or -1 (give back; the count never goes below 0)
  ARGV[4] n = number of records, then per record: outbound id, journal entry (JSON object
          without its closing brace; this script appends "outboundId" and "state")
  ARGV[5 + 2n] the lease's holder: a claim names it (OutboundRecord.claimedBy; absent: kept)

  Returns
    {0, journal length, r x n}  r per record: its claim count after the change (>= 0),
                                -8 (NotWaiting) the record is sent or failed: not changed,
                                -7 (NotFound) Redis does not keep the record
    {-3}                        (Fenced) a claim (+1) whose token or fence no longer holds the
                                lease. A give-back (-1) is not fenced: it undoes a claim no
                                attempt used, whoever holds the lease now (a holder starved past
                                its TTL before the attempt it claimed gives the claim back once it
                                wakes, after another holder took over; refused, two such holders
                                in a row dead-lettered a reply nobody sent: outside test QA20-F1)
]]
if tonumber(ARGV[3]) > 0 then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then return { -3 } end
  if redis.call('HGET', KEYS[2], 'n') ~= ARGV[2] then return { -3 } end
end

local delta = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local holder = ARGV[5 + 2 * n]
local out = { 0, 0 }
local len = 0
for i = 1, n do
  local id = ARGV[3 + 2 * i]
  local raw = redis.call('HGET', KEYS[3], id)
  if not raw then
    out[#out + 1] = -7
  else
    local st = cjson.decode(raw)
    if st.status ~= 'pending' and st.status ~= 'sending' then
      out[#out + 1] = -8
    else
      local claims = tonumber(st.claims) or 1
      claims = claims + delta
      if claims < 0 then claims = 0 end
      st.claims = claims
      if delta > 0 and holder and holder ~= '' then st.claimedBy = holder end
      st.rev = (tonumber(st.rev) or 0) + 1
      local json = cjson.encode(st)
      redis.call('HSET', KEYS[3], id, json)
      len = redis.call('RPUSH', KEYS[4],
        ARGV[4 + 2 * i] .. ',"outboundId":' .. cjson.encode(id) .. ',"state":' .. json .. '}')
      out[#out + 1] = claims
    end
  end
end
out[2] = len
return out
