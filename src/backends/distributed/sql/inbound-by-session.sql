-- A session's consumed inbound messages as stored, in arrival order (uses the primary key's prefix).
-- $1 channel, $2 user
SELECT message FROM inbound WHERE channel = $1 AND user_id = $2 ORDER BY seq
