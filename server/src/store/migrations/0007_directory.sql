-- The room directory. `rooms.is_public` has recorded createRoom's
-- `visibility` since the first migration; it is now the published flag that
-- `/publicRooms` lists and `/directory/list/room` changes, so no second copy
-- of it is kept. The index serves the listing, which reads only published
-- rooms (memberships by room are already served by that table's key).
CREATE INDEX rooms_published ON rooms (is_public, room_id);
