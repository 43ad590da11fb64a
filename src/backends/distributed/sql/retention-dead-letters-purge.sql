-- Retention: deletes one batch of dead letters created before the cut-off, replayed or not.
-- Each holds a message (the user's, or a reply Baton could not send) with its text.
-- $1 cut-off (timestamptz), $2 batch size
DELETE FROM dead_letters
WHERE ctid IN (
  SELECT ctid FROM dead_letters
  WHERE created_at < $1
  LIMIT $2
)
