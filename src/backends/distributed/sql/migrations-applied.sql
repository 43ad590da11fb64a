-- Ids of the migrations already applied. No parameters.
SELECT id FROM baton_migrations ORDER BY id
