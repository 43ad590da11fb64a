-- Stores dead letters. An id already stored is left as is, unless an agent replayed it and it
-- failed again since (created after the replay): then it is open again with the new failure
-- (the same message or reply fails under the same id; a copy of the first failure repeated
-- later changes nothing). A letter that comes with a commit carries its fence and is skipped
-- when the session already carries a newer one.
-- $1 jsonb array of {id, kind, channel, user_id, ref, reason, payload, created_at (ISO 8601), fence (or null)}
INSERT INTO dead_letters (id, kind, channel, user_id, ref, reason, payload, created_at)
SELECT r.id, r.kind, r.channel, r.user_id, r.ref, r.reason, r.payload, r.created_at
FROM jsonb_to_recordset($1::jsonb) AS r(
  id text, kind text, channel text, user_id text, ref text, reason text, payload jsonb,
  created_at timestamptz, fence bigint
)
WHERE r.fence IS NULL
   OR r.fence >= GREATEST(
     (SELECT s.fence FROM sessions s WHERE s.channel = r.channel AND s.user_id = r.user_id),
     (SELECT f.floor FROM fence_blocks f WHERE f.channel = r.channel AND f.user_id = r.user_id), 0
   ) -- index probes per row (see sessions-lock); the floor: fence-block-reserve.sql
ON CONFLICT (id) DO UPDATE SET
  kind = EXCLUDED.kind,
  reason = EXCLUDED.reason,
  payload = EXCLUDED.payload,
  created_at = EXCLUDED.created_at,
  replayed_at = NULL
WHERE dead_letters.replayed_at IS NOT NULL AND EXCLUDED.created_at > dead_letters.replayed_at
