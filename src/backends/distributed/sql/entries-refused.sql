-- The commit entries PostgreSQL refuses: their session's row already carries a newer fence, or
-- their fence is below the session's floor (granted by a lifetime of Redis that lost the
-- session, see fence-block-reserve.sql).
-- Runs after sessions-lock and before sessions-upsert, in the same transaction.
-- $1 jsonb array of {id, channel, user_id, fence}
SELECT e.id
FROM jsonb_to_recordset($1::jsonb) AS e(id text, channel text, user_id text, fence bigint)
WHERE e.fence < GREATEST(
  (SELECT s.fence FROM sessions s WHERE s.channel = e.channel AND s.user_id = e.user_id),
  (SELECT f.floor FROM fence_blocks f WHERE f.channel = e.channel AND f.user_id = e.user_id)
) -- index probes per row (see sessions-lock)
