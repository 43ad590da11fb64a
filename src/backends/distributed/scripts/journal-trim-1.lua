--[[
  Drops journal entries PostgreSQL now has: pops the head while its id is one of the given
  ids (so entries appended meanwhile, or already trimmed by another flusher, are safe).

  KEYS[1] journal   LIST of entries, each a JSON object starting with {"id":"<entry id>"

  ARGV    the ids of the entries written to PostgreSQL

  Returns the number of entries dropped.
]]
local ids = {}
for _, id in ipairs(ARGV) do ids[id] = true end
local dropped = 0
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then break end
  local id = string.match(head, '^{"id":"([^"]*)"')
  if not id or not ids[id] then break end
  redis.call('LPOP', KEYS[1])
  dropped = dropped + 1
end
return dropped
