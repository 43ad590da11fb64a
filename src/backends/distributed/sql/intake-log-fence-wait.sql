-- The intake log's restore (intake-log.ts): waits until no journal copy of these sessions is in
-- flight (a copy holds its sessions' fence block rows FOR SHARE, see sessions-lock), so that the
-- next statement, intake-log-consumed, sees every message such a copy consumed. Sessions that
-- never had a fence block have no copy to wait for.
-- $1 jsonb array of {channel, user_id}
SELECT f.channel
FROM (
  SELECT k.channel, k.user_id FROM jsonb_to_recordset($1::jsonb) AS k(channel text, user_id text)
  ORDER BY k.channel, k.user_id
) k
CROSS JOIN LATERAL (
  SELECT channel FROM fence_blocks
  WHERE channel = k.channel AND user_id = k.user_id
  FOR NO KEY UPDATE
) f
