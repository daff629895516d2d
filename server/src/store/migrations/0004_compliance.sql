-- Compliance: legal holds, media attached to events (so a purge can remove
-- the files its events referenced), ages for to-device messages and key
-- backups (so they can expire), and the tombstones of erased accounts.

-- A hold covers a user (a custodian: everything they sent or uploaded) or a
-- room (everything in it). Released holds stay as history.
CREATE TABLE legal_holds (
    hold_id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    target TEXT NOT NULL,
    case_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_ts BIGINT NOT NULL,
    released_by TEXT,
    released_ts BIGINT
);
CREATE INDEX legal_holds_target ON legal_holds (scope, target);

-- Which uploads an event carries. The server cannot read encrypted events,
-- so the sender declares it (`attach_media` on /send, as in MSC3911).
CREATE TABLE event_media (
    event_id TEXT NOT NULL,
    media_id TEXT NOT NULL,
    PRIMARY KEY (event_id, media_id)
);
CREATE INDEX event_media_media ON event_media (media_id);

-- NULL for rows written before this migration; the first purge dates them.
ALTER TABLE to_device ADD COLUMN created_ts BIGINT;
ALTER TABLE backup_keys ADD COLUMN updated_ts BIGINT;

-- Erased accounts, by the audit pseudonym of their user id, so that the id
-- is never handed out again and no row names the person.
CREATE TABLE erased_users (
    pseudonym TEXT PRIMARY KEY,
    erased_ts BIGINT NOT NULL
);
