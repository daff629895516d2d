-- The web console (`/_cloister/console/`).

-- Console roles, granted apart from the Matrix admin flag: an operator
-- (users, devices, registration tokens, health) need not be the
-- data-protection officer (retention, holds, erasure, exports, audit), and
-- the other way round.
CREATE TABLE staff_roles (
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    granted_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, role)
);

-- Signed-in console sessions. The cookie is stored only as its SHA-256
-- digest (its CSRF token is derived from it, so needs no row); the roles are
-- read again on every request, so a revoked role takes effect at once.
CREATE TABLE console_sessions (
    session_hash {BLOB} PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    last_seen_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);
