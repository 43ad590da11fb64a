-- The intake log: one page of rows stored before a cut-off, oldest first (in arrival order within
-- a millisecond), after a position.
-- $1 cut-off (timestamptz), $2-$6 the last row of the page before (stored_at, arrival, channel,
-- user_id, id), $7 page size, $8 start of the dedupe window (older rows are the sweep's, never
-- restored)
SELECT channel, user_id, id, stored_at, arrival, message
FROM intake_log
WHERE stored_at < $1 AND stored_at >= $8 AND (stored_at, arrival, channel, user_id, id) > ($2, $3, $4, $5, $6)
ORDER BY stored_at, arrival, channel, user_id, id
LIMIT $7
