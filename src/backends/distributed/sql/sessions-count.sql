-- Every session counted by flow, step and needs_agent, with the earliest last interaction
-- (epoch ms; the creation time where the session has none) among them; with $1, only the
-- sessions whose last interaction is that recent (the others are idle past the session TTL).
-- $1 epoch ms (null: every session)
SELECT flow, step, needs_agent, count(*) AS n, min(active) AS oldest
FROM (
  SELECT flow, step, needs_agent,
         coalesce((snapshot->>'lastInteraction')::double precision * 1000,
                  (snapshot->>'createdAt')::double precision) AS active
  FROM sessions
) s
WHERE $1::double precision IS NULL OR active >= $1::double precision
GROUP BY flow, step, needs_agent
