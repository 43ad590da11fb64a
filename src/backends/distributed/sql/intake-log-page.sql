-- The intake log: one page of rows stored before a cut-off, oldest first, after a position.
-- $1 cut-off (timestamptz), $2-$5 the last row of the page before (stored_at, channel, user_id,
-- id), $6 page size
SELECT channel, user_id, id, stored_at, message
FROM intake_log
WHERE stored_at < $1 AND (stored_at, channel, user_id, id) > ($2, $3, $4, $5)
ORDER BY stored_at, channel, user_id, id
LIMIT $6
