-- Thread-aware notification counts (issue #13): each notification belongs
-- to the thread its event is in ('main' for the room's main timeline, else
-- the thread root's event id), so a threaded read receipt clears only its
-- thread and /sync can count per thread (`unread_thread_notifications`).
ALTER TABLE notifications ADD COLUMN thread_id TEXT NOT NULL DEFAULT 'main';
UPDATE notifications SET thread_id = (
    SELECT e.relates_to FROM events e
    WHERE e.event_id = notifications.event_id AND e.rel_type = 'm.thread'
) WHERE EXISTS (
    SELECT 1 FROM events e
    WHERE e.event_id = notifications.event_id AND e.rel_type = 'm.thread'
);
-- Still covers the count every /sync makes, now per thread.
DROP INDEX notifications_user_pos;
CREATE INDEX notifications_user_pos ON notifications (user_id, stream_pos, room_id, thread_id, highlight);
