-- A session's transition log, oldest first.
-- $1 channel, $2 user
SELECT record
FROM transitions WHERE channel = $1 AND user_id = $2
ORDER BY id
