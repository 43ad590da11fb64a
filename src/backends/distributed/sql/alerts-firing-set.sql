-- An alert's firing was announced. $1 alert, $2 when (epoch ms).
INSERT INTO alerts_firing (alert, at) VALUES ($1, $2)
ON CONFLICT (alert) DO UPDATE SET at = excluded.at
