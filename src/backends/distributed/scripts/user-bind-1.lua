--[[
  Binds a business-scoped user id to the session of the phone number a message named it with,
  unless a later message (by WhatsApp's timestamp) bound it already: a redelivered or
  late message from an old number does not take the user back there (user-aliases.ts). The value
  is "<timestamp>:<session key user>" (a session key user holds no colon).

  KEYS[1] binding   STRING

  ARGV[1] the message's timestamp, Unix seconds
  ARGV[2] the session key user (the phone number)
  ARGV[3] ttl, ms

  Returns
    1  bound
    0  a later message's binding kept (its expiry renewed)
]]
local current = redis.call('GET', KEYS[1])
if current then
  local at = tonumber(string.match(current, '^(%d+):'))
  if at ~= nil and at > tonumber(ARGV[1]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[3])
return 1
