-- A session's consumed inbound messages as stored, in arrival order (uses the primary key's
-- prefix): all of them, or with $3 the newest $3.
-- $1 channel, $2 user, $3 how many of the newest (null: all)
SELECT message FROM (
  SELECT seq, message FROM inbound WHERE channel = $1 AND user_id = $2 ORDER BY seq DESC LIMIT $3
) newest
ORDER BY seq
