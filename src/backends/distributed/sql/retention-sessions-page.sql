-- Retention: the next page of sessions in key order after ($1, $2) (the sweep's cursor; '' and
-- '' from the first), each with whether its data is due to be cleared: written last before the
-- cut-off (so expired, and past the message retention) and holding data. A primary-key range:
-- a page costs the same whatever the table holds.
-- $1 channel, $2 user_id, $3 cut-off (timestamptz), $4 page size
SELECT channel, user_id, (updated_at < $3 AND snapshot -> 'data' <> '{}'::jsonb) AS due
FROM sessions
WHERE (channel, user_id) > ($1::text, $2::text)
ORDER BY channel, user_id
LIMIT $4
