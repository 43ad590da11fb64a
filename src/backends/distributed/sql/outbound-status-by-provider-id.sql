-- Status webhooks for records Redis no longer keeps, all of one round in one statement: applies
-- each in PostgreSQL with the same rule as statusAllowed in src/model/message.ts and
-- scripts/includes/outbound-status.lua (delivery states only advance; failed unless delivered,
-- and a late sent does not replace failed; the revision is left alone so Redis's later writes
-- still apply).
-- Only a send of the status's own channel (one gateway's webhooks never touch the other's).
-- The caller passes at most one status per provider message id (an UPDATE changes a row once).
-- Each status finds its record by an index probe (the lateral LIMIT keeps it a nested loop, never
-- a scan of the table), and the update reaches the record by its primary key.
-- $1 provider message ids, $2 statuses, $3 last errors (null to keep), $4 channels (text arrays
-- of one length); returns the position (1-based) of each status that named a record, with it.
UPDATE outbound o SET
  status = CASE
    WHEN o.status = s.status THEN o.status
    WHEN s.status IN ('sent', 'delivered', 'read', 'played') AND (
      (o.status NOT IN ('sent', 'delivered', 'read', 'played') AND NOT (o.status = 'failed' AND s.status = 'sent'))
      OR array_position(ARRAY['sent', 'delivered', 'read', 'played'], s.status)
         > array_position(ARRAY['sent', 'delivered', 'read', 'played'], o.status)
    ) THEN s.status
    WHEN s.status = 'failed' AND o.status NOT IN ('delivered', 'read', 'played') THEN s.status
    ELSE o.status
  END,
  last_error = COALESCE(s.last_error, o.last_error),
  updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
  AS s(provider_message_id, status, last_error, channel, n)
CROSS JOIN LATERAL (
  SELECT x.id FROM outbound x
  WHERE x.provider_message_id = s.provider_message_id AND x.channel = s.channel
  LIMIT 1
) t
WHERE o.id = t.id
RETURNING s.n, o.id, o.channel, o.user_id
