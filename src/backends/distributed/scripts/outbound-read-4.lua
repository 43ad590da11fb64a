--[[
  Reads outbound records of one session: the unsent ones in seq order, or the ones that
  the given provider message ids name.

  KEYS[1] unsent    ZSET outbound id by seq
  KEYS[2] out       HASH outbound id -> immutable record JSON
  KEYS[3] outState  HASH outbound id -> mutable part JSON
  KEYS[4] pmid      HASH provider message id -> outbound id

  ARGV[1] 'unsent', or 'pmid' followed by provider message ids

  Returns a flat list: record JSON, mutable part JSON, ... ('' for a provider id Redis does
  not know, in which case the pair is '', '').
]]
local ids
if ARGV[1] == 'unsent' then
  ids = redis.call('ZRANGE', KEYS[1], 0, -1)
else
  ids = {}
  for i = 2, #ARGV do
    -- '~' marks another copy's id (outbound-update-7.lua): it names the record all the same
    local id = redis.call('HGET', KEYS[4], ARGV[i]) or ''
    if string.sub(id, 1, 1) == '~' then id = string.sub(id, 2) end
    ids[#ids + 1] = id
  end
end
local out = {}
for _, id in ipairs(ids) do
  if id == '' then
    out[#out + 1] = ''
    out[#out + 1] = ''
  else
    out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
    out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
  end
end
return out
