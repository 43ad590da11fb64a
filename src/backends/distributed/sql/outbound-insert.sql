-- Writes outbound records created by commits, except those of a commit whose session already
-- carries a newer fence. An existing row is replaced only by a newer lease's record, or by a
-- later revision of the same lease's.
-- $1 jsonb array of {id, channel, user_id, seq, version, step, is_prompt, fence, status,
--    attempts, claims, provider_message_id, last_error, rev, record, created_at (ISO 8601)}
INSERT INTO outbound AS o (id, channel, user_id, seq, version, step, is_prompt, fence, status, attempts,
                           claims, provider_message_id, last_error, rev, record, created_at, updated_at)
SELECT r.id, r.channel, r.user_id, r.seq, r.version, r.step, r.is_prompt, r.fence, r.status, r.attempts,
       COALESCE(r.claims, 1), r.provider_message_id, r.last_error, r.rev, r.record, r.created_at, now()
FROM jsonb_to_recordset($1::jsonb) AS r(
  id text, channel text, user_id text, seq bigint, version bigint, step text, is_prompt boolean,
  fence bigint, status text, attempts integer, claims integer, provider_message_id text, last_error text,
  rev bigint, record jsonb, created_at timestamptz
)
WHERE r.fence >= GREATEST(
  (SELECT s.fence FROM sessions s WHERE s.channel = r.channel AND s.user_id = r.user_id),
  (SELECT f.floor FROM fence_blocks f WHERE f.channel = r.channel AND f.user_id = r.user_id), 0
) -- index probes per row (see sessions-lock); the floor: fence-block-reserve.sql
ORDER BY r.id
ON CONFLICT (id) DO UPDATE SET
  seq = EXCLUDED.seq,
  version = EXCLUDED.version,
  step = EXCLUDED.step,
  is_prompt = EXCLUDED.is_prompt,
  fence = EXCLUDED.fence,
  status = EXCLUDED.status,
  attempts = EXCLUDED.attempts,
  claims = EXCLUDED.claims,
  provider_message_id = EXCLUDED.provider_message_id,
  last_error = EXCLUDED.last_error,
  rev = EXCLUDED.rev,
  record = EXCLUDED.record,
  updated_at = now()
WHERE (o.fence, o.rev) < (EXCLUDED.fence, EXCLUDED.rev)
