-- Sessions of a user named by session user, wa_id or BSUID, optionally on one channel.
-- $1 user, $2 channel (null for all)
SELECT channel, user_id, snapshot
FROM sessions
WHERE (user_id = $1 OR wa_id = $1 OR bsuid = $1) AND ($2::text IS NULL OR channel = $2)
ORDER BY channel, user_id
