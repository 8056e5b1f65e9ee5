DROP TABLE mfa_settings;
DROP TABLE mfa_backup_codes;
DROP TABLE mfa_factors;
ALTER TABLE sessions DROP COLUMN mfa_at;
