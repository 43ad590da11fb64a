-- Retention: redacts the text of one batch of outbound records created before the message
-- retention's cut-off that reached WhatsApp, or effect calls that are done (never pending or
-- sending ones; failed replies are deleted, retention-outbound-failed-purge.sql): the body becomes a text saying why. The record
-- stays until the retention: it tells an old button's prompt from the current one (SPEC 1.7).
-- $1 reason (text), $2 cut-off (timestamptz), $3 batch size
UPDATE outbound
SET record = jsonb_set(record, '{body}', jsonb_build_object('type', 'text', 'text', $1::text))
WHERE ctid IN (
  SELECT ctid FROM outbound
  WHERE created_at < $2
    AND (status IN ('sent', 'delivered', 'read', 'played') OR (status = 'failed' AND record->'effect' IS NOT NULL))
    AND record #>> '{body,text}' IS DISTINCT FROM $1::text
  LIMIT $3
)
