-- The intake log (intake-log.ts): messages of webhooks to acknowledge, written before the answer
-- when Redis does not persist every write. A message logged already keeps its first row. One
-- PostgreSQL has consumed already (in `inbound`: a redelivery that Redis no longer recognises,
-- after a restart lost its dedupe markers) is not logged, and is returned: a duplicate. The
-- check is a scalar subquery per row, so that it stays one index probe per message whatever
-- `inbound` holds (an EXISTS may be planned as a join over the whole table).
-- $1 jsonb array of {channel, user_id, id, stored_at, arrival, message}
WITH r AS MATERIALIZED (
  SELECT x.channel, x.user_id, x.id, x.stored_at, x.arrival, x.message,
    (SELECT true FROM inbound i WHERE i.channel = x.channel AND i.user_id = x.user_id AND i.id = x.id) AS consumed
  FROM jsonb_to_recordset($1::jsonb) AS x(channel text, user_id text, id text, stored_at timestamptz, arrival integer, message jsonb)
), logged AS (
  INSERT INTO intake_log (channel, user_id, id, stored_at, arrival, message)
  SELECT channel, user_id, id, stored_at, arrival, message FROM r
  WHERE consumed IS NULL
  ORDER BY channel, user_id, id
  ON CONFLICT (channel, user_id, id) DO NOTHING
)
SELECT channel, user_id, id FROM r WHERE consumed
