-- The OpenID Connect provider's tables (package oidcprovider): authorization
-- requests, the grants they become, the access and refresh tokens issued from
-- each grant, and the keys tokens are signed with. See oidcprovider/store.go for
-- what each field means.

-- An authorization request from /authorize until its code is redeemed; kept
-- until it expires so that a replayed code is recognized. id is random and
-- appears in the login URL; binding, completion and code_hash are SHA-256
-- hashes (the values themselves are never stored).
CREATE TABLE oidc_auth_requests (
	id text PRIMARY KEY,
	client_id text NOT NULL,
	redirect_uri text NOT NULL,
	scopes text[] NOT NULL,
	state text NOT NULL DEFAULT '',
	nonce text NOT NULL DEFAULT '',
	response_type text NOT NULL,
	response_mode text NOT NULL DEFAULT '',
	code_challenge text NOT NULL,
	code_challenge_method text NOT NULL,
	prompt text[] NOT NULL DEFAULT '{}',
	max_age bigint,
	login_hint text NOT NULL DEFAULT '',
	binding text NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	user_id uuid REFERENCES users (id) ON DELETE CASCADE,
	session_id text NOT NULL DEFAULT '',
	auth_time timestamptz,
	amr text[] NOT NULL DEFAULT '{}',
	completed_at timestamptz,
	completion text NOT NULL DEFAULT '',
	code_hash text UNIQUE,
	code_expires_at timestamptz,
	code_used_at timestamptz
);
CREATE INDEX oidc_auth_requests_expires_at_idx ON oidc_auth_requests (expires_at);

-- What one sign-in gave one client; its id is the authorization request's.
-- Revoking it ends every token issued from it.
CREATE TABLE oidc_grants (
	id text PRIMARY KEY,
	client_id text NOT NULL,
	user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	session_id text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
	scopes text[] NOT NULL,
	auth_time timestamptz NOT NULL,
	amr text[] NOT NULL DEFAULT '{}',
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	revoked_at timestamptz
);
CREATE INDEX oidc_grants_user_client_idx ON oidc_grants (user_id, client_id);
CREATE INDEX oidc_grants_expires_at_idx ON oidc_grants (expires_at);

-- Access tokens are JWTs; id is their jti.
CREATE TABLE oidc_access_tokens (
	id text PRIMARY KEY,
	grant_id text NOT NULL REFERENCES oidc_grants (id) ON DELETE CASCADE,
	scopes text[] NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	revoked_at timestamptz
);
CREATE INDEX oidc_access_tokens_grant_idx ON oidc_access_tokens (grant_id);
CREATE INDEX oidc_access_tokens_expires_at_idx ON oidc_access_tokens (expires_at);

-- Refresh tokens are random; id is their SHA-256. used_at is set when one is
-- exchanged for the next (rotation).
CREATE TABLE oidc_refresh_tokens (
	id text PRIMARY KEY,
	grant_id text NOT NULL REFERENCES oidc_grants (id) ON DELETE CASCADE,
	scopes text[] NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	used_at timestamptz,
	revoked_at timestamptz
);
CREATE INDEX oidc_refresh_tokens_grant_idx ON oidc_refresh_tokens (grant_id);
CREATE INDEX oidc_refresh_tokens_expires_at_idx ON oidc_refresh_tokens (expires_at);

-- Token signing keys (PKCS #8 DER), when no key file is configured; the newest
-- signs, all are published.
CREATE TABLE oidc_signing_keys (
	id text PRIMARY KEY,
	algorithm text NOT NULL,
	private_key bytea NOT NULL,
	created_at timestamptz NOT NULL
);
