-- Single sign-on. Everything a login needs between the redirect to the
-- identity provider and the client's m.login.token lives here, not in a
-- node's memory, so any node of a cluster can finish a login another began.

-- A sign-in in progress at an identity provider, keyed by the random
-- `state` (OIDC) or `RelayState` (SAML) the provider hands back.
CREATE TABLE sso_pending (
    state TEXT PRIMARY KEY,
    idp_id TEXT NOT NULL,
    client_redirect TEXT NOT NULL,
    -- OIDC: the nonce and the PKCE code verifier; SAML: the AuthnRequest's
    -- ID (InResponseTo must name it) and ''.
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);

-- SAML assertions already used, until they expire: a response cannot be
-- posted twice, to any node.
CREATE TABLE saml_seen_assertions (
    assertion_id TEXT PRIMARY KEY,
    expires_ts BIGINT NOT NULL
);

-- Short-lived, single-use tokens for m.login.token, stored hashed.
CREATE TABLE login_tokens (
    token_hash {BLOB} PRIMARY KEY,
    user_id TEXT NOT NULL,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    -- The provider's session id (OIDC `sid`), '' if it sent none.
    session_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);

-- Which account a person at an identity provider is: linked on the
-- provider's issuer and its stable subject id, never on a name or mail.
CREATE TABLE identity_links (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX identity_links_user ON identity_links (user_id);

-- The devices an SSO login opened, so a provider's back-channel logout
-- finds them by session or subject.
CREATE TABLE sso_devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    session_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE INDEX sso_devices_subject ON sso_devices (issuer, subject);

-- A token the provider logged out "softly": the device and its keys stay,
-- the token answers M_UNKNOWN_TOKEN with soft_logout: true.
ALTER TABLE access_tokens ADD COLUMN soft_logout BIGINT NOT NULL DEFAULT 0;
