-- OAuth sign-ins handed off to a single sign-on provider: which provider
-- identity and session vouched for the person (JSON: issuer, subject,
-- session_id), so the device the grant opens is logged out with that
-- provider session (back-channel logout), as `/login`'s SSO devices are.
ALTER TABLE oauth_grants ADD COLUMN sso_login TEXT;
ALTER TABLE oauth_device_grants ADD COLUMN sso_login TEXT;
