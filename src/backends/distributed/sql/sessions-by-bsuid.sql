-- The session each business-scoped user id names on its channel (user-aliases.ts: a user id whose
-- binding Redis no longer has): a phone number's session before one keyed by the id itself, then
-- the one the user wrote to last (an agent's reset or hand-back does not count), then the newest.
-- $1 jsonb array of {channel, bsuid}
SELECT DISTINCT ON (s.channel, s.bsuid) s.channel, s.bsuid, s.user_id,
  COALESCE((s.snapshot ->> 'lastInteraction')::bigint, 0) AS last_interaction
FROM jsonb_to_recordset($1::jsonb) AS r(channel text, bsuid text)
JOIN sessions s ON s.channel = r.channel AND s.bsuid = r.bsuid
ORDER BY s.channel, s.bsuid, (s.user_id = s.bsuid),
  (s.snapshot ->> 'lastInteraction')::bigint DESC NULLS LAST, (s.snapshot ->> 'createdAt')::bigint DESC
