-- Accounts created by a first login through the LDAP directory. Their
-- password lives in the directory only (users.password_hash stays NULL),
-- and a row here is what keeps them from ever signing in locally.
CREATE TABLE ldap_accounts (
    user_id TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL
);
