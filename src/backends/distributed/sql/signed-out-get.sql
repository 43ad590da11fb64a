-- Whether a sign-in was ended. $1 its id, $2 now (epoch ms).
SELECT 1 AS ended FROM signed_out WHERE id = $1 AND until > $2
