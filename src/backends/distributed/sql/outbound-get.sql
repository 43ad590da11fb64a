-- One outbound record.
-- $1 id
SELECT id, channel, user_id, seq, record, status, attempts, claims, provider_message_id, last_error, rev
FROM outbound WHERE id = $1
