-- Stores dead letters; an id already stored is left as is. A letter that comes with a commit
-- carries its fence and is skipped when the session already carries a newer one.
-- $1 jsonb array of {id, kind, channel, user_id, ref, reason, payload, created_at (ISO 8601), fence (or null)}
INSERT INTO dead_letters (id, kind, channel, user_id, ref, reason, payload, created_at)
SELECT r.id, r.kind, r.channel, r.user_id, r.ref, r.reason, r.payload, r.created_at
FROM jsonb_to_recordset($1::jsonb) AS r(
  id text, kind text, channel text, user_id text, ref text, reason text, payload jsonb,
  created_at timestamptz, fence bigint
)
WHERE r.fence IS NULL
   OR r.fence >= COALESCE(
     (SELECT s.fence FROM sessions s WHERE s.channel = r.channel AND s.user_id = r.user_id), 0
   ) -- one index probe per row (see sessions-lock)
ON CONFLICT (id) DO NOTHING
