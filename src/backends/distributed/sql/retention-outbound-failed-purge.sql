-- Retention: deletes one batch of replies (not effect calls: those are redacted as the sent ones
-- are) that failed, created before the message retention's cut-off. Each holds the text Baton meant to send; nobody saw its buttons, and a
-- replay of its dead letter must not send a redacted text (retention-outbound-redact.sql).
-- $1 cut-off (timestamptz), $2 batch size
DELETE FROM outbound
WHERE ctid IN (
  SELECT ctid FROM outbound
  WHERE created_at < $1 AND status = 'failed' AND record->'effect' IS NULL
  LIMIT $2
)
