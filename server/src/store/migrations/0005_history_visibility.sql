-- Who may read an event depends on the history visibility in force when it
-- was sent, not on the room's current one (spec: "History visibility").
-- Existing rows are filled in by the migration's Rust step
-- (store::readable::backfill), which reads each room's visibility changes.
ALTER TABLE events ADD COLUMN history_visibility TEXT;

-- A user's membership history in a room, and state as of a position.
CREATE INDEX events_room_type_key ON events (room_id, event_type, state_key, stream_pos);
