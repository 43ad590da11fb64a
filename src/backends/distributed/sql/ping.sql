-- Health check. No parameters.
SELECT 1 AS ok
