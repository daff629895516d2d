-- The device authorization grant (RFC 8628): an app on a device without a
-- good browser (a TV, a second phone) shows a short code; the person enters
-- it on Cloister's page elsewhere, signs in and consents there, and the app
-- polls the token endpoint. `device_code_hash` is the SHA-256 of what the
-- app polls with; `user_code` is what the person types (8 letters, no
-- vowels). `status`: pending, approved, denied, used.
CREATE TABLE oauth_device_grants (
    device_code_hash {BLOB} PRIMARY KEY,
    user_code TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    status TEXT NOT NULL,
    user_id TEXT,
    last_poll_ts BIGINT,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE UNIQUE INDEX oauth_device_grants_user_code ON oauth_device_grants (user_code);

-- A browser sign-in that answers a device grant rather than a redirect URI.
ALTER TABLE oauth_grants ADD COLUMN device_code_hash {BLOB};
