-- A status webhook for a record Redis no longer keeps: applies it in PostgreSQL with the
-- same rule as statusAllowed in src/model/message.ts and scripts/includes/outbound-status.lua
-- (delivery states only advance; failed unless delivered, and a late sent does not replace
-- failed; the revision is left alone so
-- Redis's later writes still apply).
-- Only a send of the status's own channel (one gateway's webhooks never touch the other's).
-- $1 provider message id, $2 status, $3 last error (null to keep), $4 channel
UPDATE outbound SET
  status = CASE
    WHEN status = $2 THEN status
    WHEN $2 IN ('sent', 'delivered', 'read', 'played') AND (
      (status NOT IN ('sent', 'delivered', 'read', 'played') AND NOT (status = 'failed' AND $2 = 'sent'))
      OR array_position(ARRAY['sent', 'delivered', 'read', 'played'], $2)
         > array_position(ARRAY['sent', 'delivered', 'read', 'played'], status)
    ) THEN $2
    WHEN $2 = 'failed' AND status NOT IN ('delivered', 'read', 'played') THEN $2
    ELSE status
  END,
  last_error = COALESCE($3, last_error),
  updated_at = now()
WHERE provider_message_id = $1 AND channel = $4
RETURNING id, channel, user_id
