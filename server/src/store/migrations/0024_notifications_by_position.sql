-- Notifications keyed by (user, stream position) instead of (user, event
-- id). A stream position names one event, so the key says the same, but
-- the evaluator's inserts now land at the end of each user's range instead
-- of on a random page, and the key covers what /sync and /notifications
-- read (SQLite keeps the rows in the key's b-tree: WITHOUT ROWID), so the
-- table has two b-trees to update instead of four. The push evaluator's
-- transaction holds SQLite's writer while it inserts, and every message
-- sent meanwhile waits (docs/performance.md, "Notifications kept in the
-- order they are written").
CREATE TABLE notifications_by_position (
    user_id TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    highlight BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    actions TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, stream_pos)
){WITHOUT_ROWID};
INSERT INTO notifications_by_position
    (user_id, stream_pos, room_id, thread_id, highlight, event_id, actions, ts)
SELECT user_id, stream_pos, room_id, thread_id, highlight, event_id, actions, ts
FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_by_position RENAME TO notifications;
-- Retention deletes by age.
CREATE INDEX notifications_ts ON notifications (ts);
