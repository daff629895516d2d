-- A counter that moves whenever anything a send's authorization reads
-- about the room changes: its current state, its memberships, or the
-- content of a state event (redaction, erasure). A message send reads the
-- room outside the writer and stores its event only if the counter is still
-- what it read (store::checked_append), so the writer runs one statement
-- per message instead of a round trip for every read.
ALTER TABLE rooms ADD COLUMN state_serial BIGINT NOT NULL DEFAULT 0;
