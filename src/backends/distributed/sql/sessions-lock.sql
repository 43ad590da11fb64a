-- Locks the existing rows of the given sessions, in key order (no deadlocks between group
-- commits), and returns their fence and revision.
-- $1 jsonb array of {channel, user_id}
SELECT s.channel, s.user_id, s.fence, s.rev
FROM sessions s
JOIN jsonb_to_recordset($1::jsonb) AS k(channel text, user_id text)
  ON s.channel = k.channel AND s.user_id = k.user_id
ORDER BY s.channel, s.user_id
FOR UPDATE OF s
