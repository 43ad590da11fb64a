-- Dead letters, newest first.
-- $1 limit
SELECT id, kind, channel, user_id, ref, reason, payload, created_at, replayed_at
FROM dead_letters
ORDER BY created_at DESC, id
LIMIT $1
