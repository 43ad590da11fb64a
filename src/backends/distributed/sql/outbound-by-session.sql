-- A session's outbound records in send order; with $3 true, only the unsent ones; with $4, only
-- the newest $4 of them.
-- $1 channel, $2 user, $3 unsent only, $4 how many of the newest (null: all)
SELECT id, seq, record, status, attempts, claims, provider_message_id, last_error, rev FROM (
  SELECT id, seq, record, status, attempts, claims, provider_message_id, last_error, rev
  FROM outbound
  WHERE channel = $1 AND user_id = $2 AND (NOT $3 OR status IN ('pending', 'sending'))
  ORDER BY seq DESC
  LIMIT $4
) newest
ORDER BY seq
