-- Writes session snapshots. A row is only replaced by a write carrying a fence at least as
-- new and a later (fence, revision): a stale lease's write, or a replayed older one, is refused.
-- Nor is a fence below the session's floor written (a lifetime of Redis that lost the session
-- granted it, see fence-block-reserve.sql).
-- $1 jsonb array of {channel, user_id, wa_id, bsuid, flow, step, version, rev, fence, needs_agent, snapshot}
INSERT INTO sessions AS s (channel, user_id, wa_id, bsuid, flow, step, version, rev, fence, needs_agent, snapshot, updated_at)
SELECT r.channel, r.user_id, r.wa_id, r.bsuid, r.flow, r.step, r.version, r.rev, r.fence, r.needs_agent, r.snapshot, now()
FROM jsonb_to_recordset($1::jsonb) AS r(
  channel text, user_id text, wa_id text, bsuid text, flow text, step text,
  version bigint, rev bigint, fence bigint, needs_agent boolean, snapshot jsonb
)
WHERE r.fence >= COALESCE(
  (SELECT f.floor FROM fence_blocks f WHERE f.channel = r.channel AND f.user_id = r.user_id), 0
) -- one index probe per row (see sessions-lock); the floor: fence-block-reserve.sql
ORDER BY r.channel, r.user_id
ON CONFLICT (channel, user_id) DO UPDATE SET
  wa_id = EXCLUDED.wa_id,
  bsuid = EXCLUDED.bsuid,
  flow = EXCLUDED.flow,
  step = EXCLUDED.step,
  version = EXCLUDED.version,
  rev = EXCLUDED.rev,
  fence = EXCLUDED.fence,
  needs_agent = EXCLUDED.needs_agent,
  snapshot = EXCLUDED.snapshot,
  updated_at = now()
WHERE s.fence <= EXCLUDED.fence AND (s.fence, s.rev) < (EXCLUDED.fence, EXCLUDED.rev)
RETURNING s.channel, s.user_id
