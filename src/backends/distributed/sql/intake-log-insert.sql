-- The intake log (intake-log.ts): messages of acknowledged webhooks, written before the answer
-- when Redis does not persist every write. A message logged already keeps its first row.
-- $1 jsonb array of {channel, user_id, id, stored_at, message}
INSERT INTO intake_log (channel, user_id, id, stored_at, message)
SELECT r.channel, r.user_id, r.id, r.stored_at, r.message
FROM jsonb_to_recordset($1::jsonb) AS r(channel text, user_id text, id text, stored_at timestamptz, message jsonb)
ORDER BY r.channel, r.user_id, r.id
ON CONFLICT (channel, user_id, id) DO NOTHING
