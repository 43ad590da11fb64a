-- The intake log (intake-log.ts): messages of webhooks to acknowledge, written before the answer
-- when Redis does not persist every write. A message logged already keeps its first row, whose
-- place in the log ([stored_at ms, arrival]) is returned: a redelivery is stored in Redis with the
-- place its first delivery took (see StoredMessage.logged). One PostgreSQL has consumed already
-- (in `inbound`: a redelivery that Redis no longer recognises, after a restart lost its dedupe
-- markers) is not logged, and is returned as consumed: a duplicate. The checks are scalar
-- subqueries, one index probe each per message whatever `inbound` and the log hold (an EXISTS
-- or a join may be planned as a scan); they see the log as it was before this statement.
-- $1 jsonb array of {channel, user_id, id, stored_at, arrival, message}
WITH r AS MATERIALIZED (
  SELECT x.channel, x.user_id, x.id, x.stored_at, x.arrival, x.message,
    (SELECT true FROM inbound i WHERE i.channel = x.channel AND i.user_id = x.user_id AND i.id = x.id) AS consumed,
    (SELECT jsonb_build_array((extract(epoch FROM l.stored_at) * 1000)::bigint, l.arrival) FROM intake_log l
      WHERE l.channel = x.channel AND l.user_id = x.user_id AND l.id = x.id) AS first
  FROM jsonb_to_recordset($1::jsonb) AS x(channel text, user_id text, id text, stored_at timestamptz, arrival integer, message jsonb)
), logged AS (
  INSERT INTO intake_log (channel, user_id, id, stored_at, arrival, message)
  SELECT channel, user_id, id, stored_at, arrival, message FROM r
  WHERE consumed IS NULL
  ORDER BY channel, user_id, id
  ON CONFLICT (channel, user_id, id) DO NOTHING
)
SELECT channel, user_id, id, consumed IS NOT NULL AS consumed, first FROM r
WHERE consumed OR first IS NOT NULL
