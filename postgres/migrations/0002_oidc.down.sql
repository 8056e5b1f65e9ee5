-- Drops the OpenID Connect provider's tables: every application is signed out
-- (their refresh tokens stop working) and, unless a key file is configured, the
-- signing key is lost, so tokens issued before no longer verify.
DROP TABLE oidc_signing_keys;
DROP TABLE oidc_refresh_tokens;
DROP TABLE oidc_access_tokens;
DROP TABLE oidc_grants;
DROP TABLE oidc_auth_requests;
