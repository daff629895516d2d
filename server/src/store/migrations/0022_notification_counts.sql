-- Unread notifications per user, room and thread, kept as notifications
-- are recorded, receipts move and old notifications go (store::unread), so
-- /sync does not count them. Filled by the migration's backfill.
CREATE TABLE notification_counts (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    notifications BIGINT NOT NULL,
    highlights BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
);
