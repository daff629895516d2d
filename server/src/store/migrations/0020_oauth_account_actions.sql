-- What a person approved on the account management page for an app signed
-- in through the OAuth API (MSC4312's `m.oauth` stage): replacing their
-- cross-signing keys, for a few minutes after `approved_ts`, once.
CREATE TABLE oauth_account_actions (
    user_id TEXT NOT NULL,
    action TEXT NOT NULL,
    approved_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, action)
);
