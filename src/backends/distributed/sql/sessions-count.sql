-- Every session counted by flow, step and needs_agent, with the earliest last interaction
-- (epoch ms; the creation time where the session has none) among them. No parameters.
SELECT flow, step, needs_agent, count(*) AS n,
       min(coalesce((snapshot->>'lastInteraction')::double precision * 1000,
                    (snapshot->>'createdAt')::double precision)) AS oldest
FROM sessions
GROUP BY flow, step, needs_agent
