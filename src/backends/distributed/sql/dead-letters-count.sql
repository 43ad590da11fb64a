-- Dead letters not replayed. No parameters.
SELECT count(*)::integer AS n FROM dead_letters WHERE replayed_at IS NULL
