-- The sign-in history the suspicious-activity checks read (auth/risk.go): when,
-- from where and from which device each sign-in (or second-factor attempt) of a
-- known user came, and how it ended. Kept for the checks' lookback (90 days by
-- default), then pruned.

CREATE TABLE signins (
	id bigserial PRIMARY KEY,
	user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	at timestamptz NOT NULL,
	ip text NOT NULL DEFAULT '',
	-- Where ip was by GeoIP at the time: ISO 3166-1 alpha-2 country, city, and
	-- the position in degrees (NULL when the database had none).
	country text NOT NULL DEFAULT '',
	city text NOT NULL DEFAULT '',
	latitude double precision,
	longitude double precision,
	device_id text NOT NULL DEFAULT '',
	outcome text NOT NULL CHECK (outcome IN ('success', 'failure')),
	CHECK ((latitude IS NULL) = (longitude IS NULL))
);
CREATE INDEX signins_user_outcome_at_idx ON signins (user_id, outcome, at DESC);
CREATE INDEX signins_at_idx ON signins (at);
