-- Push notifications (issue #13). Pushers are tied to the device whose
-- access token made them (spec: "pushers"), so deleting a device, logging
-- out, deactivating or erasing an account deletes them.
CREATE TABLE pushers (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    kind TEXT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT,
    lang TEXT NOT NULL,
    data TEXT NOT NULL,
    pushkey_ts BIGINT NOT NULL,
    -- When deliveries to this pusher began failing without a success since;
    -- NULL while it works. A pusher failing for a day is dropped.
    failing_since BIGINT,
    PRIMARY KEY (app_id, pushkey, user_id)
);
CREATE INDEX pushers_user ON pushers (user_id, device_id);

-- What the rules said notify for, per user: /notifications lists them and
-- /sync counts those after the user's read receipt. `stream_pos` is the
-- event's.
CREATE TABLE notifications (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    highlight BIGINT NOT NULL,
    actions TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
-- Covers the count every /sync makes (no table lookups per row): a user
-- who reads nothing accumulates rows, and each sync sums them.
CREATE INDEX notifications_user_pos ON notifications (user_id, stream_pos, room_id, highlight);
CREATE INDEX notifications_ts ON notifications (ts);

-- How far the evaluator has read the event stream: one row. Events are
-- evaluated after they commit, never before, and exactly once.
CREATE TABLE push_cursor (
    id BIGINT PRIMARY KEY,
    stream_pos BIGINT NOT NULL
);
-- Starts at the present: history from before pushes existed is not pushed.
INSERT INTO push_cursor (id, stream_pos) SELECT 1, COALESCE(MAX(pos), 0) FROM stream_counter;

-- Pushes waiting to go to a gateway, one row per (notification, pusher),
-- so a crash or restart loses none. A sender claims a row by setting
-- `lease_until`; with several nodes only the one holding the lease sends.
CREATE TABLE push_outbox (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    unread BIGINT NOT NULL,
    prio TEXT NOT NULL,
    tweaks TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_ts BIGINT NOT NULL,
    next_attempt_ts BIGINT NOT NULL,
    lease_until BIGINT NOT NULL
);
CREATE INDEX push_outbox_due ON push_outbox (next_attempt_ts);
