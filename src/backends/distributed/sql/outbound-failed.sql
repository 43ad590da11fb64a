-- Replies (not effects) whose delivery failed, newest failure first.
-- $1 limit
SELECT id, channel, user_id, seq, record, status, attempts, claims, provider_message_id, last_error, rev, updated_at
FROM outbound
WHERE status = 'failed' AND record->'effect' IS NULL
ORDER BY updated_at DESC, id
LIMIT $1
