-- Drops the passkey ceremonies in progress: people in the middle of adding or
-- using a passkey start again. Registered passkeys (mfa_factors) stay.
DROP TABLE webauthn_ceremonies;
