-- One-time codes sent by email or SMS (auth/codes.go): to enrol a secondary
-- email or a phone number, and as second-factor challenges. A user has at most
-- one code per (purpose, method): a new code replaces the row (with a new id,
-- so an attempt at the old one cannot touch it). The code itself is never
-- stored: hash is its HMAC-SHA256 under salt (and the server's pepper).

CREATE TABLE mfa_codes (
	id uuid NOT NULL UNIQUE,
	user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	purpose text NOT NULL CHECK (purpose IN ('enrol', 'challenge')),
	method text NOT NULL CHECK (method IN ('email', 'sms')),
	-- The SMS factor the code belongs to (NULL for email); removing the factor
	-- removes its codes.
	factor_id uuid REFERENCES mfa_factors (id) ON DELETE CASCADE,
	-- The email address or E.164 number the code went to.
	destination text NOT NULL,
	salt bytea NOT NULL,
	hash bytea NOT NULL,
	attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	used_at timestamptz,
	PRIMARY KEY (user_id, purpose, method)
);
CREATE INDEX mfa_codes_expires_at_idx ON mfa_codes (expires_at);
