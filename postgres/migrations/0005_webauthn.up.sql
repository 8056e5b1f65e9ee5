-- Passkey (WebAuthn) ceremonies in progress: between the options sent to the
-- browser and its answer, at most five minutes, taken once. The passkeys
-- themselves are mfa_factors rows (method 'hwk'). See auth/passkeys.go.

-- id is the SHA-256 of the ceremony id the page holds (never stored); session is
-- the relying party's state (the challenge...), opaque to the database.
CREATE TABLE webauthn_ceremonies (
	id text PRIMARY KEY,
	user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	kind text NOT NULL CHECK (kind IN ('registration', 'assertion')),
	name text NOT NULL DEFAULT '',
	session bytea NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX webauthn_ceremonies_expires_at_idx ON webauthn_ceremonies (expires_at);
CREATE INDEX webauthn_ceremonies_user_id_idx ON webauthn_ceremonies (user_id);
