-- Multi-factor authentication: when a session last verified a second factor, the
-- enrolled factors, backup codes and the per-user MFA settings. See auth/mfa.go.

ALTER TABLE sessions ADD COLUMN mfa_at timestamptz;

CREATE TABLE mfa_factors (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	method text NOT NULL CHECK (method IN ('otp', 'email', 'sms', 'hwk')),
	label text NOT NULL DEFAULT '',
	-- TOTP: the secret sealed (AES-256-GCM, key id inside); never plaintext.
	data bytea NOT NULL,
	confirmed boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now(),
	last_used_at timestamptz,
	last_step bigint NOT NULL DEFAULT 0
);
CREATE INDEX mfa_factors_user_id_idx ON mfa_factors (user_id);

-- hash is the SHA-256 of the code: codes are shown once and never stored.
CREATE TABLE mfa_backup_codes (
	user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	hash text NOT NULL,
	created_at timestamptz NOT NULL,
	used_at timestamptz,
	PRIMARY KEY (user_id, hash)
);

CREATE TABLE mfa_settings (
	user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
	deadline timestamptz,
	required boolean NOT NULL DEFAULT false,
	service_types text[] NOT NULL DEFAULT '{}',
	secondary_email text NOT NULL DEFAULT '',
	secondary_email_verified boolean NOT NULL DEFAULT false
);
