-- Reserves the next block of fencing tokens of one session (the block is
-- (ceiling - block size) + 1 .. ceiling), and returns the session's row with it: a session new
-- to this Redis is about to be loaded, so one round trip serves both.
-- $1 channel, $2 user, $3 block size
WITH block AS (
  INSERT INTO fence_blocks AS f (channel, user_id, ceiling)
  VALUES ($1, $2, $3)
  ON CONFLICT (channel, user_id) DO UPDATE SET ceiling = f.ceiling + $3
  RETURNING ceiling
)
SELECT block.ceiling, s.snapshot, s.version, s.rev, s.fence
FROM block
LEFT JOIN sessions s ON s.channel = $1 AND s.user_id = $2
