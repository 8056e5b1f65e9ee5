-- Trusted devices and account recovery. See auth/devices.go and auth/recovery.go.

-- A browser a user signed in from. token_hash is the SHA-256 of the browser's
-- device cookie and trust_hash that of its signed "remember this device" token:
-- neither cookie is stored. A revoked device stays as history; the same browser
-- signing in again becomes a new row.
CREATE TABLE devices (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	token_hash text NOT NULL,
	name text NOT NULL DEFAULT '',
	browser text NOT NULL DEFAULT '',
	os text NOT NULL DEFAULT '',
	first_seen timestamptz NOT NULL,
	last_seen timestamptz NOT NULL,
	last_ip text NOT NULL DEFAULT '',
	last_location text NOT NULL DEFAULT '',
	trust_hash text NOT NULL DEFAULT '',
	trusted_until timestamptz,
	revoked_at timestamptz
);
CREATE UNIQUE INDEX devices_user_token_idx ON devices (user_id, token_hash) WHERE revoked_at IS NULL;
CREATE INDEX devices_user_last_seen_idx ON devices (user_id, last_seen DESC);

-- A request by a user who lost every second factor. The emailed codes are kept as
-- keyed hashes, the recovery link's token as its SHA-256. decided_by is not a
-- foreign key: the record outlives the staff account.
CREATE TABLE recovery_requests (
	id uuid PRIMARY KEY,
	user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	status text NOT NULL CHECK (status IN ('verifying', 'awaiting_approval', 'approved', 'redeemed', 'denied', 'cancelled', 'failed', 'expired')),
	reason text NOT NULL DEFAULT '',
	primary_email text NOT NULL,
	secondary_email text NOT NULL DEFAULT '',
	primary_code_hash text NOT NULL,
	secondary_code_hash text NOT NULL DEFAULT '',
	codes_expire_at timestamptz NOT NULL,
	attempts integer NOT NULL DEFAULT 0,
	ip text NOT NULL DEFAULT '',
	user_agent text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL,
	verified_at timestamptz,
	ticket_id text NOT NULL DEFAULT '',
	decided_by text NOT NULL DEFAULT '',
	decided_at timestamptz,
	decision_note text NOT NULL DEFAULT '',
	token_hash text NOT NULL DEFAULT '',
	token_expires_at timestamptz,
	redeemed_at timestamptz
);
-- At most one open request per user, even when two are filed at once.
CREATE UNIQUE INDEX recovery_requests_open_idx ON recovery_requests (user_id)
	WHERE status IN ('verifying', 'awaiting_approval', 'approved');
CREATE UNIQUE INDEX recovery_requests_token_idx ON recovery_requests (token_hash) WHERE token_hash <> '';
CREATE INDEX recovery_requests_user_idx ON recovery_requests (user_id, created_at DESC);
CREATE INDEX recovery_requests_status_idx ON recovery_requests (status, created_at);
