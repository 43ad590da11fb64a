-- A session's outbound records in send order; with $3 true, only the unsent ones.
-- $1 channel, $2 user, $3 unsent only
SELECT id, seq, record, status, attempts, claims, provider_message_id, last_error, rev
FROM outbound
WHERE channel = $1 AND user_id = $2 AND (NOT $3 OR status IN ('pending', 'sending'))
ORDER BY seq
