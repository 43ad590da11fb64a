-- Dead letters, newest first; with $2, those after the letter ($2, $3) in that order (the page
-- before ended with it).
-- $1 limit, $2 created_at of the last letter of the page before (null: from the newest), $3 its id
SELECT id, kind, channel, user_id, ref, reason, payload, created_at, replayed_at
FROM dead_letters
WHERE $2::timestamptz IS NULL OR created_at < $2 OR (created_at = $2 AND id > $3)
ORDER BY created_at DESC, id
LIMIT $1
