-- Retention: deletes one batch of consumed inbound messages (the users' texts) stored before the
-- cut-off. (Dedupe lives in Redis; these rows are the conversation's record.)
-- $1 cut-off (timestamptz), $2 batch size
DELETE FROM inbound
WHERE ctid IN (
  SELECT ctid FROM inbound WHERE stored_at < $1 LIMIT $2
)
