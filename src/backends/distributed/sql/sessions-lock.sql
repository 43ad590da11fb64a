-- Locks the existing rows of the given sessions, in key order (no deadlocks between group
-- commits), and returns their fence and revision. It also takes their fence blocks' rows
-- FOR SHARE (copies do not wait for each other there), so that a new fence block
-- (fence-block-reserve) and the intake log's restore check (intake-log-fence-wait) wait until
-- a copy in flight has committed or failed: a session new to a restarted Redis is then loaded
-- with what that copy wrote, and the messages it consumed are not put back into the mailbox.
-- $1 jsonb array of {channel, user_id}
--
-- Every statement of a group commit reaches rows by their keys, one index probe per row of $1
-- (a lateral or scalar subquery), never through a join: the planner takes $1 for 100 rows, so
-- a join against a table of a few thousand rows was planned as a hash join over the whole
-- table, and a connection keeps the plan it made while the table was small for as long as it
-- lives. The journal copy's connections also set enable_seqscan = off, so a probe planned
-- while a table was empty is still an index scan (pg-store.ts; test/distributed/pg-plans.test.ts).
SELECT s.channel, s.user_id, s.fence, s.rev
FROM (
  SELECT k.channel, k.user_id FROM jsonb_to_recordset($1::jsonb) AS k(channel text, user_id text)
  ORDER BY k.channel, k.user_id
) k
LEFT JOIN LATERAL (
  SELECT true AS shared FROM fence_blocks
  WHERE channel = k.channel AND user_id = k.user_id
  FOR SHARE
) f ON true
CROSS JOIN LATERAL (
  SELECT channel, user_id, fence, rev FROM sessions
  WHERE channel = k.channel AND user_id = k.user_id
  FOR UPDATE
) s
