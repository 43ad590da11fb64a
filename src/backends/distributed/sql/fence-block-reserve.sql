-- Reserves the next block of fencing tokens of each given session (a block is
-- (ceiling - block size) + 1 .. ceiling), and returns each session's row with it: a session new
-- to this Redis is about to be loaded, so one round trip serves both, for every session whose
-- first grant is waiting (one transaction, one commit for all of them).
-- $1 JSON array of {channel, user_id}, each session at most once; $2 block size
WITH req AS (
  SELECT r.channel, r.user_id
  FROM jsonb_to_recordset($1::jsonb) AS r(channel text, user_id text)
),
block AS (
  INSERT INTO fence_blocks AS f (channel, user_id, ceiling)
  SELECT req.channel, req.user_id, $2::bigint FROM req
  ORDER BY req.channel, req.user_id
  ON CONFLICT (channel, user_id) DO UPDATE SET ceiling = f.ceiling + $2::bigint
  RETURNING f.channel, f.user_id, f.ceiling
)
SELECT block.channel, block.user_id, block.ceiling, s.snapshot, s.version, s.rev, s.fence
FROM block
LEFT JOIN LATERAL (
  -- one index probe per session, not a join over the table (see sessions-lock.sql)
  SELECT snapshot, version, rev, fence FROM sessions
  WHERE channel = block.channel AND user_id = block.user_id
  LIMIT 1
) s ON true
