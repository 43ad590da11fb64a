-- The given logged messages that PostgreSQL has consumed (in `inbound`), one index probe each.
-- $1 jsonb array of {channel, user_id, id}
SELECT x.channel, x.user_id, x.id
FROM jsonb_to_recordset($1::jsonb) AS x(channel text, user_id text, id text)
WHERE (SELECT true FROM inbound i WHERE i.channel = x.channel AND i.user_id = x.user_id AND i.id = x.id)
