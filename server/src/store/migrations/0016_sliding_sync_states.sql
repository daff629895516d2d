-- Sliding sync connections keep *states*, not positions (see
-- store/sliding_sync.rs). A `pos` names a state and a stream position, so a
-- response that leaves what the client holds unchanged (the usual case: new
-- messages in rooms it already follows) writes nothing. Connection state is
-- a cache of what clients hold: dropping it only makes clients start their
-- connections again, which they do on M_UNKNOWN_POS, as the new `pos` format
-- would have made them anyway.
DROP TABLE sliding_sync_rooms;
DROP TABLE sliding_sync_positions;

-- One row per state of a connection: `state_id` is the opaque first half of
-- `pos`, `seq` orders a connection's states, `list_counts` the list counts
-- the state's client was sent (a JSON object), `used_ts` when a request last
-- used it (refreshed at most daily, for the idle purge).
CREATE TABLE sliding_sync_positions (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    state_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    list_counts TEXT NOT NULL,
    used_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, conn_id, state_id)
);

-- The rooms a state's client holds, with the room config they were sent
-- with. `sent_pos` NULL: the room is live, held up to the stream position
-- in the client's `pos`; otherwise held up to `sent_pos`.
CREATE TABLE sliding_sync_rooms (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    state_id BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    sent_pos BIGINT,
    config TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, conn_id, state_id, room_id)
);
