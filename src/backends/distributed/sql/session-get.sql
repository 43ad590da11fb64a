-- One session's snapshot with its commit bookkeeping.
-- $1 channel, $2 user
SELECT snapshot, version, rev, fence FROM sessions WHERE channel = $1 AND user_id = $2
