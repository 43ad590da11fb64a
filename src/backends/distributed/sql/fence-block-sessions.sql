-- The rows of sessions whose fence block was just reserved (fence-block-reserve, the statement
-- before it), one index probe per session.
-- $1 JSON array of {channel, user_id}
SELECT k.channel, k.user_id, s.snapshot, s.version, s.rev, s.fence
FROM jsonb_to_recordset($1::jsonb) AS k(channel text, user_id text)
CROSS JOIN LATERAL (
  SELECT snapshot, version, rev, fence FROM sessions
  WHERE channel = k.channel AND user_id = k.user_id
  LIMIT 1
) s
