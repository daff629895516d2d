-- Simplified sliding sync (MSC4186): what each connection of a device has
-- been sent. A connection keeps its current position and the one before it,
-- so a client that lost a response and retries with the older `pos` is
-- answered from what it really has.

-- One row per position handed out: `pos_id` is the opaque token, `seq`
-- orders a connection's positions, `stream_pos` is the event stream
-- position the response covered, `list_counts` the list counts it sent (a
-- JSON object), so a changed count alone is news.
CREATE TABLE sliding_sync_positions (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    pos_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    stream_pos BIGINT NOT NULL,
    list_counts TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, conn_id, pos_id)
);

-- The rooms a position's client holds: up to which stream position each was
-- sent, and with which room config (required_state and timeline_limit), so
-- a changed config is sent again in full.
CREATE TABLE sliding_sync_rooms (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    pos_id BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    sent_pos BIGINT NOT NULL,
    config TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, conn_id, pos_id, room_id)
);
