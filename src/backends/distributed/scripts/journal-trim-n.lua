--[[
  Drops journal entries PostgreSQL now has, for one journal or several (a single node trims a
  whole group copy's journals in one call; a cluster calls it once per session, whose keys share
  one slot): pops each journal's head while its id is one of the ids given for it (so entries
  appended meanwhile, or already trimmed by another flusher, are safe).

  KEYS[i]  a journal: LIST of entries, each a JSON object starting with {"id":"<entry id>"

  ARGV     per journal, in KEYS order: the number of ids, then the ids of its entries written
           to PostgreSQL

  Returns the number of entries dropped, all journals together.
]]
local dropped = 0
local at = 1
for k = 1, #KEYS do
  local n = tonumber(ARGV[at])
  local ids = {}
  for i = at + 1, at + n do ids[ARGV[i]] = true end
  at = at + n + 1
  while true do
    local head = redis.call('LINDEX', KEYS[k], 0)
    if not head then break end
    local id = string.match(head, '^{"id":"([^"]*)"')
    if not id or not ids[id] then break end
    redis.call('LPOP', KEYS[k])
    dropped = dropped + 1
  end
end
return dropped
