-- A sign-in ended. $1 its id, $2 when its cookie would have expired (epoch ms), $3 now (epoch ms):
-- the rows of cookies expired by then go.
WITH expired AS (DELETE FROM signed_out WHERE until <= $3)
INSERT INTO signed_out (id, until) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET until = excluded.until
