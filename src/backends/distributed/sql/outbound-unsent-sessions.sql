-- Sessions with replies committed and not sent (pending or sending), created before a cut-off,
-- oldest first (the partial index outbound_unsent): after Redis lost its memory, nothing else
-- would bring them back before the user writes again.
-- $1 cut-off (timestamptz), $2 most rows; `oldest` in epoch ms
SELECT channel, user_id, (extract(epoch FROM min(created_at)) * 1000)::bigint AS oldest
FROM (
  SELECT channel, user_id, created_at FROM outbound
  WHERE status IN ('pending', 'sending') AND created_at < $1
  ORDER BY created_at
  LIMIT $2
) o
GROUP BY channel, user_id
