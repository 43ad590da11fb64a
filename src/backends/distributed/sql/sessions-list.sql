-- A page of sessions in key order, after the cursor's key.
-- $1 step (null: any), $2 needs_agent (null: any), $3 channel (null: any),
-- $4 cursor channel (null: from the start), $5 cursor user, $6 limit
SELECT channel, user_id, snapshot
FROM sessions
WHERE ($1::text IS NULL OR step = $1)
  AND ($2::boolean IS NULL OR needs_agent = $2)
  AND ($3::text IS NULL OR channel = $3)
  AND ($4::text IS NULL OR (channel, user_id) > ($4::text, $5::text))
ORDER BY channel, user_id
LIMIT $6
