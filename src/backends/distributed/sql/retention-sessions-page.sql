-- Retention: the next page of sessions in key order after ($1, $2) (the sweep's cursor; '' and
-- '' from the first), each with whether it is due to be cleared: written last before the
-- cut-off (so expired, and past the message retention), at a step or holding data, and awaiting
-- no effect. A primary-key range: a page costs the same whatever the table holds.
-- $1 channel, $2 user_id, $3 cut-off (timestamptz), $4 page size
SELECT channel, user_id,
  (updated_at < $3 AND (step IS NOT NULL OR snapshot -> 'data' <> '{}'::jsonb)
    AND snapshot -> 'awaiting' IS NULL) AS due
FROM sessions
WHERE (channel, user_id) > ($1::text, $2::text)
ORDER BY channel, user_id
LIMIT $4
