-- Records consumed inbound messages, except those of a commit whose session already carries
-- a newer fence; a replayed entry changes nothing.
-- $1 jsonb array of {channel, user_id, fence, id, seq, message, stored_at, consumed_at, entry_id, outcome}
INSERT INTO inbound (channel, user_id, id, seq, message, stored_at, consumed_at, entry_id, outcome)
SELECT r.channel, r.user_id, r.id, r.seq, r.message, r.stored_at, r.consumed_at, r.entry_id, r.outcome
FROM jsonb_to_recordset($1::jsonb) AS r(
  channel text, user_id text, fence bigint, id text, seq bigint, message jsonb, stored_at timestamptz,
  consumed_at timestamptz, entry_id text, outcome text
)
WHERE r.fence >= GREATEST(
  (SELECT s.fence FROM sessions s WHERE s.channel = r.channel AND s.user_id = r.user_id),
  (SELECT f.floor FROM fence_blocks f WHERE f.channel = r.channel AND f.user_id = r.user_id), 0
) -- index probes per row (see sessions-lock); the floor: fence-block-reserve.sql
ORDER BY r.channel, r.user_id, r.id
ON CONFLICT (channel, user_id, id) DO UPDATE SET
  seq = EXCLUDED.seq,
  message = EXCLUDED.message,
  stored_at = EXCLUDED.stored_at,
  consumed_at = EXCLUDED.consumed_at,
  entry_id = EXCLUDED.entry_id,
  outcome = EXCLUDED.outcome
WHERE inbound.entry_id <> EXCLUDED.entry_id AND inbound.consumed_at < EXCLUDED.consumed_at
