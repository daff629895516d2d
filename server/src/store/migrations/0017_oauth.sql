-- Cloister as an OAuth 2.0 authorization server (MSC3861): registered
-- clients, authorization requests on their way through the browser, and
-- the sessions (one per device) whose refresh tokens rotate. Every secret
-- (authorization codes, refresh tokens, the browser binding, device codes)
-- is stored as its SHA-256 digest only.

-- Clients registered dynamically (MSC2966): `metadata` is the registration
-- as accepted (JSON).
CREATE TABLE oauth_clients (
    client_id TEXT PRIMARY KEY,
    metadata TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);

-- One authorization request: what the client asked for, the browser it is
-- bound to, who signed in, and the code handed out (used at most once;
-- `session_id` is what it was exchanged for, revoked if it comes back).
CREATE TABLE oauth_grants (
    grant_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    state TEXT,
    code_challenge TEXT NOT NULL,
    response_mode TEXT NOT NULL,
    browser_hash {BLOB} NOT NULL,
    user_id TEXT,
    code_hash {BLOB},
    code_used_ts BIGINT,
    session_id TEXT,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE UNIQUE INDEX oauth_grants_code ON oauth_grants (code_hash);

-- A signed-in client: its device, the current refresh token and the one
-- before it (accepted again for a short grace after rotation, so a lost
-- answer does not sign the device out).
CREATE TABLE oauth_sessions (
    session_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    refresh_hash {BLOB} NOT NULL,
    previous_refresh_hash {BLOB},
    rotated_ts BIGINT,
    created_ts BIGINT NOT NULL
);
CREATE UNIQUE INDEX oauth_sessions_refresh ON oauth_sessions (refresh_hash);
CREATE INDEX oauth_sessions_previous ON oauth_sessions (previous_refresh_hash);
CREATE INDEX oauth_sessions_device ON oauth_sessions (user_id, device_id);

-- Access tokens handed out by the token endpoint expire; login tokens
-- from /login keep NULL (no expiry), as before.
ALTER TABLE access_tokens ADD COLUMN expires_ts BIGINT;
