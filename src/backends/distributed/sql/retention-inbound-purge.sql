-- Retention: deletes one batch of consumed inbound messages (the users' texts) stored before the
-- cut-off: the later of the message retention and the dedupe window, since after Redis loses its
-- dedupe markers these rows are how a redelivery is recognised (intake-log.ts); inside the window
-- a text past the message retention is redacted instead (retention-inbound-redact.sql).
-- $1 cut-off (timestamptz), $2 batch size
DELETE FROM inbound
WHERE ctid IN (
  SELECT ctid FROM inbound WHERE stored_at < $1 LIMIT $2
)
