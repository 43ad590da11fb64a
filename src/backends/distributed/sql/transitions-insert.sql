-- Appends transition records in the given order, except those of a commit whose session
-- already carries a newer fence; a replayed entry inserts nothing.
-- $1 jsonb array of {channel, user_id, fence (the commit's), entry_id, ord, version, from_step,
--    to_step, kind, message_ids (array), at (ISO 8601), worker, fencing_token, record}
INSERT INTO transitions (channel, user_id, entry_id, ord, version, from_step, to_step, kind, message_ids, at, worker, fencing_token, record)
SELECT r.channel, r.user_id, r.entry_id, r.ord, r.version, r.from_step, r.to_step, r.kind,
       ARRAY(SELECT jsonb_array_elements_text(r.message_ids)), r.at, r.worker, r.fencing_token, r.record
FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(j, n)
CROSS JOIN LATERAL jsonb_to_record(e.j) AS r(
  channel text, user_id text, fence bigint, entry_id text, ord integer, version bigint, from_step text,
  to_step text, kind text, message_ids jsonb, at timestamptz, worker text, fencing_token bigint, record jsonb
)
WHERE r.fence >= GREATEST(
  (SELECT s.fence FROM sessions s WHERE s.channel = r.channel AND s.user_id = r.user_id),
  (SELECT f.floor FROM fence_blocks f WHERE f.channel = r.channel AND f.user_id = r.user_id), 0
) -- index probes per row (see sessions-lock); the floor: fence-block-reserve.sql
ORDER BY e.n
ON CONFLICT (entry_id, ord) DO NOTHING
