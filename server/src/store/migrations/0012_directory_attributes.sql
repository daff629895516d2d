-- What a directory sign-in imports of a person for the user directory
-- (issue #13): mail and department, only when the operator names the
-- attributes. Refreshed by each login and directory sync; deleted when the
-- account is deactivated or erased. Keyed by user, not by source, so SAML
-- and OpenID Connect sign-in can fill the same columns.
CREATE TABLE directory_attributes (
    user_id TEXT PRIMARY KEY,
    mail TEXT,
    department TEXT,
    updated_ts BIGINT NOT NULL
);
