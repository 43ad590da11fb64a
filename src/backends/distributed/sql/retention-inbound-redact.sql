-- Retention: redacts one batch of inbound messages (the users' texts) stored before the message
-- retention's cut-off but still inside the dedupe window, after which they are deleted: the
-- content becomes `unsupported` with its original type and the reason, the profile name goes.
-- The row stays: after Redis loses its dedupe markers, it is how a redelivery is recognised
-- (intake-log.ts).
-- $1 reason (text), $2 cut-off (timestamptz), $3 batch size
UPDATE inbound
SET message = jsonb_set(
  message - 'profileName',
  '{content}',
  jsonb_build_object('type', 'unsupported', 'originalType', message #>> '{content,type}', 'reason', $1::text)
)
WHERE ctid IN (
  SELECT ctid FROM inbound
  WHERE stored_at < $2 AND message #>> '{content,reason}' IS DISTINCT FROM $1::text
  LIMIT $3
)
