-- The stream position of each room's latest event that moves it up a
-- client's room list (store::sliding_sync::BUMP_TYPES, or its creation),
-- kept at send time so a sliding sync request reads one column per room
-- instead of looking up the latest event of six types in every joined room.
ALTER TABLE rooms ADD COLUMN bump_pos BIGINT NOT NULL DEFAULT 0;
UPDATE rooms SET bump_pos = COALESCE((
    SELECT MAX(e.stream_pos) FROM events e
    WHERE e.room_id = rooms.room_id
      AND ((e.state_key IS NULL AND e.event_type IN
            ('m.room.message', 'm.room.encrypted', 'm.sticker', 'm.call.invite', 'm.poll.start'))
           OR (e.state_key = '' AND e.event_type = 'm.room.create'))
), 0);
