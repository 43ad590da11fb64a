-- One dead letter.
-- $1 id
SELECT id, kind, channel, user_id, ref, reason, payload, created_at, replayed_at
FROM dead_letters WHERE id = $1
