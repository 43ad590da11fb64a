-- The alerts announced and not yet resolved. No parameters.
SELECT alert FROM alerts_firing
