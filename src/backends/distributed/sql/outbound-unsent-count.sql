-- Sends committed and not done (replies and effect calls, pending or sending), with the oldest,
-- on the partial index outbound_unsent: costs the unsent rows, not what is stored. No parameters.
SELECT count(*)::integer AS n, (extract(epoch FROM min(created_at)) * 1000)::bigint AS first
FROM outbound
WHERE status IN ('pending', 'sending')
