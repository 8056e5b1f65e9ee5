-- The auth service's tables: users, their external identities, sessions, sign-ins
-- in progress, and the append-only audit log. See package auth for what each
-- field means.

CREATE TABLE users (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	type text NOT NULL CHECK (type IN ('staff', 'owner', 'provider')),
	-- Stored as auth.NormalizeEmail returns it (trimmed, lower case). Not unique:
	-- an invited account and an unverified one may share an email.
	email text NOT NULL DEFAULT '',
	email_verified boolean NOT NULL DEFAULT false,
	name text NOT NULL DEFAULT '',
	avatar_url text NOT NULL DEFAULT '',
	roles text[] NOT NULL DEFAULT '{}',
	disabled boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_email_idx ON users (email);
CREATE INDEX users_created_at_idx ON users (created_at DESC);

-- An external account, keyed on the provider's immutable subject (never an email).
CREATE TABLE identities (
	provider text NOT NULL,
	subject text NOT NULL,
	user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	email text NOT NULL DEFAULT '',
	email_verified boolean NOT NULL DEFAULT false,
	name text NOT NULL DEFAULT '',
	avatar_url text NOT NULL DEFAULT '',
	scopes text[] NOT NULL DEFAULT '{}',
	created_at timestamptz NOT NULL DEFAULT now(),
	last_used_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (provider, subject)
);
CREATE INDEX identities_user_id_idx ON identities (user_id);

-- id is the SHA-256 of the session token: the token itself is never stored.
CREATE TABLE sessions (
	id text PRIMARY KEY,
	user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	created_at timestamptz NOT NULL,
	last_seen_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	idle_timeout interval NOT NULL,
	ip text NOT NULL DEFAULT '',
	user_agent text NOT NULL DEFAULT '',
	methods text[] NOT NULL DEFAULT '{}',
	auth_time timestamptz NOT NULL,
	revoked_at timestamptz
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id, created_at DESC);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

-- A sign-in between the redirect to the provider and its callback; id is the
-- SHA-256 of the state parameter. Each row is taken (deleted) once.
CREATE TABLE login_states (
	id text PRIMARY KEY,
	provider text NOT NULL,
	intent text NOT NULL,
	binding text NOT NULL,
	nonce text NOT NULL,
	verifier text NOT NULL,
	return_to text NOT NULL DEFAULT '',
	user_type text NOT NULL DEFAULT '',
	user_id uuid REFERENCES users (id) ON DELETE CASCADE,
	scopes text[] NOT NULL DEFAULT '{}',
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX login_states_expires_at_idx ON login_states (expires_at);

-- The security audit log. Actor and subject are not foreign keys: the record of
-- what happened outlives the accounts it names.
CREATE TABLE audit_events (
	id bigserial PRIMARY KEY,
	time timestamptz NOT NULL DEFAULT now(),
	action text NOT NULL,
	outcome text NOT NULL,
	actor_id text NOT NULL DEFAULT '',
	subject_id text NOT NULL DEFAULT '',
	provider text NOT NULL DEFAULT '',
	ip text NOT NULL DEFAULT '',
	user_agent text NOT NULL DEFAULT '',
	detail text NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_time_idx ON audit_events (time DESC, id DESC);
CREATE INDEX audit_events_actor_idx ON audit_events (actor_id, time DESC);
CREATE INDEX audit_events_subject_idx ON audit_events (subject_id, time DESC);
CREATE INDEX audit_events_action_idx ON audit_events (action, time DESC);

-- Append-only: statement-level triggers refuse every UPDATE, DELETE and TRUNCATE,
-- even one that would match no row. Only dropping the table (migrating down)
-- removes events.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'the audit log is append-only: % on audit_events is not allowed', TG_OP
		USING ERRCODE = 'insufficient_privilege',
		HINT = 'Audit events are never changed or deleted; record a new event instead.';
END
$$;
CREATE TRIGGER audit_events_append_only
	BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
	FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
