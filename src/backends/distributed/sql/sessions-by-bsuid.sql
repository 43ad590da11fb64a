-- The session each business-scoped user id names on its channel (user-aliases.ts: a user id whose
-- binding Redis no longer has). The most recently active first: one seen before bindings were
-- recorded may name two.
-- $1 jsonb array of {channel, bsuid}
SELECT DISTINCT ON (s.channel, s.bsuid) s.channel, s.bsuid, s.user_id
FROM jsonb_to_recordset($1::jsonb) AS r(channel text, bsuid text)
JOIN sessions s ON s.channel = r.channel AND s.bsuid = r.bsuid
ORDER BY s.channel, s.bsuid, s.updated_at DESC
