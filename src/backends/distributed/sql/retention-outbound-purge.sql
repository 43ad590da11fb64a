-- Retention: deletes one batch of outbound records created before the cut-off whose sending is
-- over (never pending or sending ones). Each holds the text Baton sent.
-- $1 cut-off (timestamptz), $2 batch size
DELETE FROM outbound
WHERE ctid IN (
  SELECT ctid FROM outbound
  WHERE created_at < $1 AND status NOT IN ('pending', 'sending')
  LIMIT $2
)
