--[[
  The first messages of a mailbox, in seq order.

  KEYS[1] mbox    ZSET message id by seq
  KEYS[2] msgs    HASH message id -> StoredMessage JSON
  KEYS[3] pv      the mailbox's stats version

  ARGV[1] limit
  ARGV[2] (optional) ms: a version absent is seeded from the clock, to expire after this long
          unless the mailbox changes (see mailbox-stats.lua; the stall check's repair)

  Returns {version, pending count, oldest pending storedAt, then the StoredMessage JSON
  strings, oldest first}. The first three are the mailbox's figures for the global stats,
  posted again by the worker that reads them: this repairs a post lost in a crash.
]]
-- @include mailbox-stats
-- @include mailbox-messages

local st = mailboxStats(KEYS[1], KEYS[2], KEYS[3], false, tonumber(ARGV[2]))
return appendMessages({ st[1], st[2], st[3] }, KEYS[1], KEYS[2], tonumber(ARGV[1]))
