-- The intake log (intake-log.ts): messages of webhooks to acknowledge, written before the answer
-- when Redis does not persist every write. A message logged already keeps its first row. One
-- PostgreSQL has consumed already (in `inbound`: a redelivery that Redis no longer recognises,
-- after a restart lost its dedupe markers) is not logged, and is returned: a duplicate.
-- $1 jsonb array of {channel, user_id, id, stored_at, message}
WITH r AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb)
    AS x(channel text, user_id text, id text, stored_at timestamptz, message jsonb)
), consumed AS (
  SELECT r.channel, r.user_id, r.id FROM r
  WHERE EXISTS (SELECT 1 FROM inbound i WHERE i.channel = r.channel AND i.user_id = r.user_id AND i.id = r.id)
), logged AS (
  INSERT INTO intake_log (channel, user_id, id, stored_at, message)
  SELECT r.channel, r.user_id, r.id, r.stored_at, r.message FROM r
  WHERE NOT EXISTS (SELECT 1 FROM consumed c WHERE c.channel = r.channel AND c.user_id = r.user_id AND c.id = r.id)
  ORDER BY r.channel, r.user_id, r.id
  ON CONFLICT (channel, user_id, id) DO NOTHING
)
SELECT channel, user_id, id FROM consumed
