-- Drops the auth service's tables, and with them every account, session and audit
-- event. Back up the database first.
DROP TABLE audit_events;
DROP FUNCTION audit_events_append_only();
DROP TABLE login_states;
DROP TABLE sessions;
DROP TABLE identities;
DROP TABLE users;
